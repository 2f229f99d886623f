"""Fine-tunes ViT-B/16 (ImageNet-21k) on CIFAR-10 at 384 px with the paper's recipe.

    python -m vit_jax.train --config configs/vit_b16.py --workdir workdirs/vit_b16_cifar10

Needs cifar10 prepared for TFDS (`tfds build cifar10`, or copy a prepared
~/tensorflow_datasets/cifar10) and gs://vit_models/imagenet21k/ViT-B_16.npz (read directly,
or download it and pass --config.pretrained_dir=DIR). On 8 GPUs of 16 GB add
--config.accum_steps=8 (as google-research/vision_transformer does).
"""

from __future__ import annotations

import ml_collections

from configs import finetune


def get_config() -> ml_collections.ConfigDict:
    return finetune.get_config("b16,cifar10")
