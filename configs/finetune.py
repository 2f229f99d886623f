r"""Fine-tunes a published ImageNet-21k model on a dataset with the paper's recipe (Appendix B.1.1).

    python -m vit_jax.train --config configs/finetune.py:b16,cifar10 --workdir workdirs/b16_cifar10
    python -m vit_jax.train --config configs/finetune.py:l16,cifar100 --workdir ... \
        --config.pretrained_dir=/data/vit_models/imagenet21k

The argument is `model,dataset`. Models: the short names of `MODELS` (`b16`, `r50_b16`, ...)
or any published name (`ViT-B_16`). Datasets: the keys of `DATASETS`. The recipe: SGD with
momentum 0.9, no weight decay, gradient clipping at 1, batch 512, 500 warmup steps then cosine
decay, 384 px; 10k steps on CIFAR, 20k on ImageNet, 500 on Pets and Flowers. The checkpoint
`<pretrained_dir>/<model>.npz` is read from gs://vit_models/imagenet21k unless overridden.
"""

from __future__ import annotations

import ml_collections

from configs import base
from vit_jax import models


def short_name(name: str) -> str:
    """'ViT-B_16' -> 'b16', 'R50+ViT-B_16' -> 'r50_b16', 'ViT-B_16-gap-norep' -> 'b16-gap-norep'."""
    return name.lower().replace("vit-", "").replace("_", "").replace("+", "_")


MODELS = {short_name(name): name for name in models.MODEL_NAMES}


# Steps and warmup steps of the paper's fine-tuning runs, per dataset (warmup shortened for
# the 500-step runs).
DATASETS = {
    "cifar10": ml_collections.ConfigDict({"total_steps": 10_000, "warmup_steps": 500}),
    "cifar100": ml_collections.ConfigDict({"total_steps": 10_000, "warmup_steps": 500}),
    "imagenet2012": ml_collections.ConfigDict({"total_steps": 20_000, "warmup_steps": 500}),
    "oxford_iiit_pet": ml_collections.ConfigDict({"total_steps": 500, "warmup_steps": 100}),
    "oxford_flowers102": ml_collections.ConfigDict({"total_steps": 500, "warmup_steps": 100}),
}

# Learning rates that differ from the base's 0.03 (google-research/vision_transformer).
BASE_LR = {("ViT-B_16", "cifar10"): 0.01}


def parse(arg: str) -> tuple[str, str]:
    """'b16,cifar10' -> ('ViT-B_16', 'cifar10'), with a clear error for unknown names."""
    model, _, dataset = arg.partition(",")
    if model not in MODELS and model not in models.MODEL_NAMES:
        raise ValueError(
            f"Unknown model {model!r} in {arg!r}; use one of {', '.join(MODELS)} "
            "(or a published name such as ViT-B_16)."
        )
    if dataset not in DATASETS:
        raise ValueError(
            f"Unknown dataset {dataset!r} in {arg!r}; use one of {', '.join(DATASETS)}."
        )
    return MODELS.get(model, model), dataset


def get_config(arg: str = "b16,cifar10") -> ml_collections.ConfigDict:
    name, dataset = parse(arg)
    config = base.get_config()
    config.model = base.model_config(name)
    config.pretrained_dir = "gs://vit_models/imagenet21k"
    config.dataset = dataset
    config.update(DATASETS[dataset])
    config.pp.crop = 384
    config.batch = 512
    config.optimizer = "sgd"
    config.momentum = 0.9
    config.weight_decay = 0.0
    config.grad_norm_clip = 1.0
    config.decay_type = "cosine"
    config.base_lr = BASE_LR.get((name, dataset), 0.03)
    return config
