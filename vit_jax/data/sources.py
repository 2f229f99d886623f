"""Where examples come from: a uniform view of TFDS datasets and raw sharded TFRecords.

A `Source` reads one shard of a split (the pipeline passes the shard of the current
process; tests pass any shard explicitly to simulate several processes) as a tf.data
stream of `{'image': encoded bytes, 'label': int64 [] or [k]}`, and knows the class names
and example counts that the pipeline and the trainer need.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

import ml_collections
import tensorflow as tf
import tensorflow_datasets as tfds

from vit_jax.data import catalog, tfrecords
from vit_jax.data.errors import DataError
from vit_jax.data.presets import DatasetPreset


class Source(Protocol):
    name: str
    num_classes: int
    label_names: list[str] | None
    multi_label: bool  # Several labels per image (the label is an int64 vector).
    defaults: DatasetPreset  # Default splits and crop.

    def num_examples(self, split: str, shard_index: int = 0, shard_count: int = 1) -> int:
        """Examples in `split` (e.g. 'train[:98%]') that shard `shard_index` reads."""

    def read(
        self, split: str, shard_index: int, shard_count: int, *, train: bool, seed: int
    ) -> tf.data.Dataset:
        """One shard of `split`; `train` shuffles the file order (seeded) each epoch."""


def process_split(split: str, shard_index: int, shard_count: int) -> str:
    """The part of a TFDS split that one of `shard_count` readers gets (disjoint, covering)."""
    return tfds.split_for_jax_process(split, process_index=shard_index, process_count=shard_count)


@dataclasses.dataclass
class TfdsSource:
    """A prepared TFDS dataset with an `image` feature and a class-label feature."""

    builder: tfds.core.DatasetBuilder
    defaults: DatasetPreset
    label_key: str
    name: str = ""
    num_classes: int = 0
    label_names: list[str] | None = None
    multi_label: bool = False

    @classmethod
    def create(cls, builder: tfds.core.DatasetBuilder, preset: DatasetPreset | None) -> TfdsSource:
        features = builder.info.features
        key = next((k for k in ("label", "labels") if k in features), None)
        if "image" not in features or key is None:
            raise DataError(
                f"Dataset {builder.name!r} needs an 'image' feature and a 'label' (or "
                f"'labels') class feature; it has {sorted(features)}."
            )
        feature, multi = features[key], False
        if isinstance(feature, tfds.features.Sequence):  # Several labels per image.
            feature, multi = feature.feature, True
        if not isinstance(feature, tfds.features.ClassLabel):
            raise DataError(f"Feature {key!r} of {builder.name!r} is not a ClassLabel.")
        splits = list(builder.info.splits)
        test = next((s for s in ("test", "validation") if s in splits), "test")
        defaults = preset or DatasetPreset(builder.name, "train", "train", test, 0)
        return cls(
            builder=builder,
            defaults=defaults,
            label_key=key,
            name=builder.name,
            num_classes=feature.num_classes or defaults.num_classes,
            label_names=list(feature.names or []) or None,
            multi_label=multi,
        )

    def num_examples(self, split: str, shard_index: int = 0, shard_count: int = 1) -> int:
        try:
            return self.builder.info.splits[
                process_split(split, shard_index, shard_count)
            ].num_examples
        except (KeyError, ValueError) as e:
            have = ", ".join(self.builder.info.splits) or "none recorded"
            raise DataError(f"Split {split!r} not in {self.name!r} (splits: {have}): {e}") from e

    def read(
        self, split: str, shard_index: int, shard_count: int, *, train: bool, seed: int
    ) -> tf.data.Dataset:
        ds = self.builder.as_dataset(
            split=process_split(split, shard_index, shard_count),
            shuffle_files=train,
            decoders={"image": tfds.decode.SkipDecoding()},  # The pp string decodes.
            read_config=tfds.ReadConfig(
                shuffle_seed=seed,
                # In-memory caching would put whole datasets into iterator checkpoints.
                try_autocache=False,
                skip_prefetch=True,
            ),
        )
        return ds.map(lambda ex: {"image": ex["image"], "label": ex[self.label_key]})


def open_source(config: ml_collections.ConfigDict) -> Source:
    """The source named by `config.dataset` (TFDS name, preset, digits, path or tfrecord:)."""
    if config.dataset.startswith(tfrecords.PREFIX):
        return tfrecords.TfrecordSource.open(config.dataset[len(tfrecords.PREFIX) :])
    builder, preset = catalog.find_builder(
        config.dataset, config.tfds_data_dir, config.tfds_manual_dir
    )
    if preset is None and isinstance(builder, catalog.ImageFolder):
        splits = builder.info.splits
        holdout = "test" not in splits  # Hold out 10% of train/ when there is no test/.
        preset = DatasetPreset(
            tfds_name=builder.name,
            train="train[:90%]" if holdout else "train",
            minival="train[90%:]",
            test="train[90%:]" if holdout else "test",
            num_classes=0,  # From the builder's ClassLabel.
        )
    return TfdsSource.create(builder, preset)
