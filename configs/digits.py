"""A small ViT trained from scratch on the offline digits dataset (scikit-learn's 8x8 digits).

    python -m vit_jax.train --config configs/digits.py --workdir workdirs/digits

Needs no download: the dataset is prepared on first use. Expected: 97.5% test accuracy after
about a minute of training on 2 quiet CPU cores (jax 0.10.2, float32; 1m40s from the command to
the end, start-up and dataset included). At the end it reports the few-shot linear accuracy of
its frozen features on the digits (1/5/10/25 shots) and saves the parameters in the published
layout to `workdirs/digits/ViT-digits.npz`, which `configs/digits_finetune.py` fine-tunes at
another resolution. The README and the notebook quote these figures (a test checks they agree).
"""

from __future__ import annotations

import ml_collections

from configs import base

IMAGE_SIZE = 16  # The 8x8 digits, upsampled.
MODEL_NAME = "ViT-digits"


def train_ops(size: int) -> str:
    """Light shift augmentation: upsample to size * 9/8 and take a random size x size window.

    No flips or large crops: they turn some digits into others.
    """
    return f"decode|resize({size + size // 8})|random_crop({size})|value_range(-1, 1)|onehot(10)"


def test_ops(size: int) -> str:
    return f"decode|resize({size})|value_range(-1, 1)|onehot(10)"


def digits_model() -> ml_collections.ConfigDict:
    """4x4 patches (a 4x4 grid plus the class token at 16 px), width 64, 4 layers."""
    model = base.model_config("ViT-Ti_16", model_name=MODEL_NAME, hidden_size=64, dtype="float32")
    model.patches.size = (4, 4)
    model.transformer.update(num_layers=4, mlp_dim=128, num_heads=4)
    return model


def get_config() -> ml_collections.ConfigDict:
    config = base.get_config()
    config.model = digits_model()
    config.pretrained_dir = ""  # From scratch.
    config.save_npz = f"{MODEL_NAME}.npz"

    config.dataset = "digits"
    config.batch = 128
    config.batch_eval = 360
    config.pp.crop = IMAGE_SIZE
    config.pp.train_ops = train_ops(IMAGE_SIZE)
    config.pp.test_ops = test_ops(IMAGE_SIZE)

    config.total_steps = 600
    config.optimizer = "adamw"
    config.weight_decay = 0.05
    config.optim_dtype = "float32"
    config.base_lr = 3e-3
    config.warmup_steps = 50
    config.fewshot.datasets = ("digits",)  # Offline, like the training data.
    config.fewshot.every = 0  # At the end only: the main job stays about a minute.
    config.progress_every = 50
    config.eval_every = 200
    config.checkpoint_every = 200
    return config
