"""The data keys of the training config, with their defaults, and how empty ones resolve.

`vit_jax/data/__init__.py` documents each key; `default_config()` is the single place that
spells out the defaults, so the trainer's base config and the tests can start from it.
"""

from __future__ import annotations

import dataclasses

import ml_collections

from vit_jax.data.errors import DataError
from vit_jax.data.presets import AUGREG_RECIPES


def default_config() -> ml_collections.ConfigDict:
    """A ConfigDict holding exactly the data keys, at their defaults."""
    config = ml_collections.ConfigDict()
    config.dataset = "digits"
    config.tfds_data_dir = ml_collections.config_dict.placeholder(str)
    config.tfds_manual_dir = ml_collections.config_dict.placeholder(str)
    config.batch = 512
    config.batch_eval = 512
    config.shuffle_buffer = 50_000
    config.prefetch = 2
    config.seed = 0
    config.pp = ml_collections.ConfigDict()
    config.pp.train = ""
    config.pp.test = ""
    config.pp.crop = 0
    config.pp.train_ops = ""
    config.pp.test_ops = ""
    config.pp.aug = "none"
    config.pp.mixup_alpha = 0.0
    config.pp.label_smoothing = 0.0
    config.pp.multi_label = False
    config.pp.central_crop = False
    return config


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """What `pp.aug`, `pp.mixup_alpha` resolve to."""

    randaug: tuple[int, int] | None  # (layers, magnitude) or None for no RandAugment.
    mixup_alpha: float  # 0 means no mixup.


def resolve_augmentation(pp: ml_collections.ConfigDict) -> Augmentation:
    """`pp.aug` names an AugReg recipe; a non-zero `pp.mixup_alpha` overrides its alpha."""
    if pp.aug not in AUGREG_RECIPES:
        names = ", ".join(AUGREG_RECIPES)
        raise DataError(f"Unknown pp.aug {pp.aug!r}; use one of: {names}.")
    if pp.mixup_alpha < 0:
        raise DataError(f"pp.mixup_alpha must be >= 0, got {pp.mixup_alpha}.")
    if not 0 <= pp.label_smoothing < 1:
        raise DataError(f"pp.label_smoothing must be in [0, 1), got {pp.label_smoothing}.")
    recipe = AUGREG_RECIPES[pp.aug]
    if recipe is None:
        return Augmentation(randaug=None, mixup_alpha=float(pp.mixup_alpha))
    alpha = float(pp.mixup_alpha) if pp.mixup_alpha > 0 else recipe.mixup_alpha
    return Augmentation((recipe.randaug_layers, recipe.randaug_magnitude), alpha)
