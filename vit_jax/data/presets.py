"""Per-dataset defaults (splits, class counts, crop) and the AugReg augmentation recipes.

Splits follow big_vision's transfer config (big_vision/configs/transfer.py) and the
ImageNet-21k pre-training config (big_vision/configs/vit_i21k.py); the paper's fine-tuning
resolution is 384.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class DatasetPreset:
    """Defaults used when the config leaves `pp.train` / `pp.test` / `pp.crop` empty."""

    tfds_name: str
    train: str  # Split used for training (minival held out).
    minival: str  # Held-out part of the training data, for model selection.
    test: str  # Split reported as the result.
    num_classes: int  # Fallback only: TFDS metadata wins when the dataset is prepared.
    crop: int = 384
    manual_download: bool = False  # Source files must be downloaded by hand to tfds_manual_dir.


DATASET_PRESETS: dict[str, DatasetPreset] = {
    "cifar10": DatasetPreset("cifar10", "train[:98%]", "train[98%:]", "test", 10),
    "cifar100": DatasetPreset("cifar100", "train[:98%]", "train[98%:]", "test", 100),
    "imagenet2012": DatasetPreset(
        "imagenet2012", "train[:99%]", "train[99%:]", "validation", 1000, manual_download=True
    ),
    "oxford_iiit_pet": DatasetPreset("oxford_iiit_pet", "train[:90%]", "train[90%:]", "test", 37),
    "oxford_flowers102": DatasetPreset(
        "oxford_flowers102", "train[:90%]", "train[90%:]", "test", 102
    ),
    # ImageNet-21k has a single "full" split; big_vision holds out its first 51,200 images.
    "imagenet21k": DatasetPreset(
        "imagenet21k", "full[51200:]", "full[:51200]", "full[:51200]", 21843, 224, True
    ),
    # The offline default: scikit-learn's bundled 8x8 digits, built by vit_jax.data.digits.
    "digits": DatasetPreset("digits", "train", "test", "test", 10, crop=32),
}


@dataclasses.dataclass(frozen=True)
class AugRecipe:
    """RandAugment (layers, magnitude) and mixup alpha of one AugReg setting."""

    randaug_layers: int
    randaug_magnitude: int
    mixup_alpha: float


# From "How to train your ViT?" (Steiner et al., 2021), as written in big_vision's
# configs/vit_i1k.py and configs/vit_i21k.py (RANDAUG_DEF / MIXUP_DEF). "light1" really does
# apply RandAugment at magnitude 0: several ops (contrast, colour, ...) still change the image.
AUGREG_RECIPES: dict[str, AugRecipe | None] = {
    "none": None,
    "light1": AugRecipe(2, 0, 0.0),
    "light2": AugRecipe(2, 10, 0.2),
    "medium1": AugRecipe(2, 15, 0.2),
    "medium2": AugRecipe(2, 15, 0.5),
    "strong1": AugRecipe(2, 20, 0.5),
    "strong2": AugRecipe(2, 20, 0.8),
}
