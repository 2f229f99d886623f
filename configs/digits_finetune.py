"""Fine-tunes the digits ViT of `configs/digits.py` at 24 px instead of 16, with a fresh head.

    python -m vit_jax.train --config configs/digits.py --workdir workdirs/digits
    python -m vit_jax.train --config configs/digits_finetune.py --workdir workdirs/digits_ft

Loads `workdirs/digits/ViT-digits.npz` (or `<arg>/ViT-digits.npz` with
`configs/digits_finetune.py:DIR`): the 4x4 grid of position embeddings is resized to 6x6 and
the head starts from zeros, as when fine-tuning a published model. The paper's fine-tuning
recipe (SGD with momentum, cosine decay) at a small scale.
"""

from __future__ import annotations

import ml_collections

from configs import digits

IMAGE_SIZE = 24


def get_config(pretrained_dir: str = "workdirs/digits") -> ml_collections.ConfigDict:
    config = digits.get_config()
    config.pretrained_dir = pretrained_dir
    config.save_npz = ""
    config.pp.crop = IMAGE_SIZE
    config.pp.train_ops = digits.train_ops(IMAGE_SIZE)
    config.pp.test_ops = digits.test_ops(IMAGE_SIZE)

    config.total_steps = 100
    config.optimizer = "sgd"
    config.momentum = 0.9
    config.weight_decay = 0.0
    config.base_lr = 0.03
    config.warmup_steps = 10
    config.progress_every = 25
    config.eval_every = 50
    config.checkpoint_every = 100
    return config
