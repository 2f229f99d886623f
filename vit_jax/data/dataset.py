"""`open_dataset(config)`: the configured dataset, opened once per run and handed around.

Opening resolves the config (presets, splits, crop, op strings), finds or prepares the
dataset and opens random access to its splits. The trainer, the iterators and evaluation
all take the `Dataset` it returns, so an image folder is walked once per run, not once per
consumer.
"""

from __future__ import annotations

import dataclasses
import functools

import ml_collections

from vit_jax.data.config import resolve_augmentation
from vit_jax.data.errors import DataError
from vit_jax.data.pp import defaults
from vit_jax.data.sources import Records, Source, open_source


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


class Dataset:
    """A source with every data setting resolved; splits are opened on first use."""

    def __init__(self, config: ml_collections.ConfigDict):
        source = open_source(config)
        pp = config.pp
        if source.multi_label and not pp.multi_label:
            raise DataError(
                f"{source.name!r} has several labels per image; set pp.multi_label=True "
                "(k-hot targets for a sigmoid loss)."
            )
        aug = resolve_augmentation(pp)
        self.source: Source = source
        self.name: str = config.dataset  # As configured: a preset, TFDS name, path or prefix.
        self.seed = int(config.seed)
        self.train_split = pp.train or source.defaults.train
        self.test_split = pp.test or source.defaults.test
        self.crop = int(pp.crop or source.defaults.crop)
        self.train_ops = defaults.train_ops(self.crop, source.num_classes, pp, aug)
        self.test_ops = defaults.test_ops(self.crop, source.num_classes, pp)
        self.mixup_alpha = aug.mixup_alpha

    @functools.cached_property
    def train_records(self) -> Records:
        return self.source.records(self.train_split)

    @functools.cached_property
    def test_records(self) -> Records:
        return self.source.records(self.test_split)

    @functools.cached_property
    def info(self) -> DatasetInfo:
        return DatasetInfo(
            name=self.source.name,
            num_classes=self.source.num_classes,
            num_train_examples=len(self.train_records),
            num_eval_examples=len(self.test_records),
            image_size=self.crop,
            channels=3,
            label_names=self.source.label_names,
        )


def open_dataset(config: ml_collections.ConfigDict) -> Dataset:
    """Opens `config.dataset` (preparing project datasets) with its preset defaults filled in."""
    return Dataset(config)


def get_dataset_info(config: ml_collections.ConfigDict) -> DatasetInfo:
    """Class count, split sizes and image size; prepares the digits dataset if needed."""
    return open_dataset(config).info
