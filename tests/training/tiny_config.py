"""A tiny, fast version of configs/digits.py for the trainer tests (also a config file).

python -m vit_jax.train --config tests/training/tiny_config.py --workdir /tmp/tiny
"""

from __future__ import annotations

import ml_collections

from configs import digits

IMAGE_SIZE = 8  # The native digit size: a 2x2 grid of 4x4 patches.


def shrink(config: ml_collections.ConfigDict, image_size: int = IMAGE_SIZE):
    """A 1-layer, 16-wide model, small batches, few steps, a metrics line every step."""
    config.model.hidden_size = 16
    config.model.transformer.update(num_layers=1, mlp_dim=32, num_heads=2)
    config.batch = 16
    config.batch_eval = 360
    config.pp.crop = image_size
    config.pp.train_ops = digits.train_ops(image_size)
    config.pp.test_ops = digits.test_ops(image_size)
    config.total_steps = 6
    config.warmup_steps = 1
    config.progress_every = 1
    config.eval_every = 0
    config.checkpoint_every = 0
    config.fewshot.datasets = ()  # tests/fewshot covers it; trainer tests stay fast.
    return config


def get_config() -> ml_collections.ConfigDict:
    config = shrink(digits.get_config())
    config.save_npz = ""
    config.optimizer = "sgd"
    config.base_lr = 0.1
    return config
