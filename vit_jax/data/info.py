"""Resolves a config into concrete settings, and `get_dataset_info` for the trainer."""

from __future__ import annotations

import dataclasses

import ml_collections

from vit_jax.data.config import resolve_augmentation
from vit_jax.data.errors import DataError
from vit_jax.data.pp import defaults
from vit_jax.data.sources import Source, open_source


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What the model and the trainer need to know about the configured dataset."""

    name: str
    num_classes: int
    num_train_examples: int  # In the training split (e.g. train[:98%]), all processes.
    num_eval_examples: int  # In the evaluation split, all processes.
    image_size: int  # = the crop size: images are [image_size, image_size, channels].
    channels: int  # Always 3: grayscale images are expanded to RGB.
    label_names: list[str] | None


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every data setting with the empty config values replaced by their defaults."""

    source: Source
    train_split: str
    test_split: str
    crop: int
    train_ops: str
    test_ops: str
    mixup_alpha: float


def resolve_settings(config: ml_collections.ConfigDict) -> Settings:
    """Opens the dataset (preparing project datasets) and fills in preset defaults."""
    source = open_source(config)
    pp = config.pp
    if source.multi_label and not pp.multi_label:
        raise DataError(
            f"{source.name!r} has several labels per image; set pp.multi_label=True "
            "(k-hot targets for a sigmoid loss)."
        )
    aug = resolve_augmentation(pp)
    crop = int(pp.crop or source.defaults.crop)
    n = source.num_classes
    return Settings(
        source=source,
        train_split=pp.train or source.defaults.train,
        test_split=pp.test or source.defaults.test,
        crop=crop,
        train_ops=defaults.train_ops(crop, n, pp, aug),
        test_ops=defaults.test_ops(crop, n, pp),
        mixup_alpha=aug.mixup_alpha,
    )


def info_from_settings(settings: Settings) -> DatasetInfo:
    source = settings.source
    return DatasetInfo(
        name=source.name,
        num_classes=source.num_classes,
        num_train_examples=source.num_examples(settings.train_split),
        num_eval_examples=source.num_examples(settings.test_split),
        image_size=settings.crop,
        channels=3,
        label_names=source.label_names,
    )


def get_dataset_info(config: ml_collections.ConfigDict) -> DatasetInfo:
    """Class count, split sizes and image size; prepares the digits dataset if needed."""
    return info_from_settings(resolve_settings(config))
