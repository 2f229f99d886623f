"""The data keys of the training config: each defined here once, with its meaning.

`default_config()` is the one definition: `configs/base.py` takes these keys from it, and
`vit_jax.data.open_dataset(config)` is the one function that reads them.
"""

from __future__ import annotations

import dataclasses

import ml_collections

from vit_jax.data.errors import DataError
from vit_jax.data.presets import AUGREG_RECIPES


def default_config() -> ml_collections.ConfigDict:
    """A ConfigDict holding exactly the data keys, at their defaults."""
    c = ml_collections.ConfigDict()
    # What to train on: a preset (cifar10, cifar100, imagenet2012, oxford_iiit_pet,
    # oxford_flowers102, imagenet21k, digits), any TFDS name prepared as ArrayRecord, an
    # image-folder path `<root>/{train,test}/<class>/*.jpg|png`, or 'arrayrecord:<dir>'
    # (JFT-style sharded ArrayRecord files, see vit_jax.data.records). 'digits'
    # (scikit-learn's 8x8 digits) and image folders are prepared offline on first use.
    c.dataset = "cifar10"
    c.tfds_data_dir = ml_collections.config_dict.placeholder(str)  # None = TFDS's default.
    c.tfds_manual_dir = ml_collections.config_dict.placeholder(str)  # Manual downloads.
    c.batch = 512  # GLOBAL training batch (all devices, all accum_steps).
    c.batch_eval = 512  # GLOBAL evaluation batch.
    c.prefetch = 2  # Batches transferred to the devices ahead of use.
    # Data order, augmentation and mixup (and the model's init): same seed, same batches.
    # The order is a global shuffle per epoch, so no shuffle buffer is needed.
    c.seed = 0
    c.pp = ml_collections.ConfigDict()
    c.pp.train = ""  # Training split, e.g. 'train[:98%]' ('' = the preset's).
    c.pp.test = ""  # Evaluation split, e.g. 'test' ('' = the preset's).
    c.pp.crop = 0  # Image size fed to the model (0 = the preset's: 384, digits 32).
    # Per-example training ops ('' = decode|inception_crop(crop)|flip_lr|[randaug|]
    # value_range(-1,1)|onehot(N)); see vit_jax.data.pp. Custom ops must apply RandAugment
    # and label smoothing themselves (setting pp.aug or pp.label_smoothing too is an error).
    c.pp.train_ops = ""
    # Evaluation ops ('' = decode|resize(crop)|value_range(-1,1)|onehot(N)); the predictor,
    # export and the converters' preprocessing configs use the same definition.
    c.pp.test_ops = ""
    c.pp.aug = "none"  # AugReg recipe: none, light1, light2, medium1, medium2, strong1, strong2.
    c.pp.mixup_alpha = 0.0  # Mixup Beta(alpha, alpha); 0 = the recipe's alpha (none default).
    c.pp.label_smoothing = 0.0  # Training label smoothing (eval targets are never smoothed).
    c.pp.multi_label = False  # k-hot targets (sigmoid loss); needed for multi-label datasets.
    # Eval: resize the short side to crop*8/7 and take the centre (ImageNet style) instead
    # of resizing the whole image to crop x crop.
    c.pp.central_crop = False
    return c


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
