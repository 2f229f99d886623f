"""The paper's default op strings, built from the crop size, class count and pp settings.

Training: Inception-style crop (5%..100% of the area) resized to the crop size, random
horizontal flip, optional RandAugment, values in [-1, 1]. Evaluation: a plain resize to the
crop size (or, with `central_crop`, resize the smaller side to crop * 8/7 and take the
centre, the ImageNet convention), same value range.
"""

from __future__ import annotations

import ml_collections

from vit_jax.data.config import Augmentation
from vit_jax.data.errors import DataError
from vit_jax.models.preprocessing import EvalPreprocessing


def label_op(num_classes: int, label_smoothing: float, multi_label: bool) -> str:
    """`onehot(...)` with smoothing folded into its on/off values.

    Softmax targets spread `label_smoothing` over all classes (on = 1 - ls + ls/N); sigmoid
    (multi-label) targets pull each independent 0/1 target towards 1/2 by ls/2.
    """
    ls = float(label_smoothing)
    if ls == 0:
        return f"onehot({num_classes})"
    off = ls / 2 if multi_label else ls / num_classes
    on = 1 - ls / 2 if multi_label else 1 - ls + ls / num_classes
    return f"onehot({num_classes}, on={on!r}, off={off!r})"


def train_ops(crop: int, num_classes: int, pp: ml_collections.ConfigDict, aug: Augmentation) -> str:
    """`pp.train_ops` if set, else the default training op string."""
    if pp.train_ops:
        _check_custom(pp, aug)
        return pp.train_ops
    randaug = f"randaug({aug.randaug[0]}, {aug.randaug[1]})|" if aug.randaug else ""
    return f"decode|inception_crop({crop})|flip_lr|{randaug}value_range(-1, 1)|" + label_op(
        num_classes, pp.label_smoothing, pp.multi_label
    )


def test_ops(crop: int, num_classes: int, pp: ml_collections.ConfigDict) -> str:
    """`pp.test_ops` if set, else the default evaluation op string (never smoothed)."""
    if pp.test_ops:
        return pp.test_ops
    image_ops = EvalPreprocessing((crop, crop), central_crop=pp.central_crop).ops()
    return f"{image_ops}|onehot({num_classes})"


def _check_custom(pp: ml_collections.ConfigDict, aug: Augmentation) -> None:
    """Custom train ops own RandAugment and the labels; settings that would be ignored fail."""
    ignored = []
    if aug.randaug:
        ignored.append(f"pp.aug={pp.aug!r} (add 'randaug(layers, magnitude)' to the ops)")
    if pp.label_smoothing:
        ignored.append("pp.label_smoothing (use onehot(N, on=..., off=...))")
    if ignored:
        raise DataError(
            "pp.train_ops is set, so these settings would be ignored: "
            + "; ".join(ignored)
            + ". Put them into pp.train_ops and reset them, or clear pp.train_ops."
        )
