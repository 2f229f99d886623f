"""Where examples come from: random access to the records of a split.

A `Source` hands out `Records` for a split: `len()` and `records[i]`, the serialized record
at any position, in any order. Random access is what makes the data position a
few integers (see `vit_jax.data.order`): the pipeline asks for the examples it needs and
never holds a shuffle buffer. TFDS datasets are read from their ArrayRecord files
(`tfds.data_sources`); `arrayrecord:<dir>` reads JFT-style sharded ArrayRecord files
(`vit_jax.data.records`). `parse(serialized)` turns a record into
`{'image': encoded bytes, 'label': int64 [] or [k]}` with TensorFlow ops, so it runs in
tf.data's parallel threads.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

import ml_collections
import tensorflow as tf
import tensorflow_datasets as tfds

from vit_jax.data import catalog, records
from vit_jax.data.errors import DataError
from vit_jax.data.presets import DatasetPreset

Example = dict[str, tf.Tensor]


class Records(Protocol):
    """The serialized records of one split, by position 0 .. len - 1."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> bytes: ...


class Source(Protocol):
    name: str
    num_classes: int
    label_names: list[str] | None
    multi_label: bool  # Several labels per image (the label is an int64 vector).
    defaults: DatasetPreset  # Default splits and crop.

    def records(self, split: str) -> Records:
        """Random access to `split` (e.g. 'train[:98%]')."""

    def parse(self, serialized: tf.Tensor) -> Example:
        """Serialized records [n] -> {'image': tf.string [n], 'label': int64 [n] or ragged
        [n, (k)]}."""


@dataclasses.dataclass
class TfdsSource:
    """A TFDS dataset prepared as ArrayRecord, with an `image` and a class-label feature."""

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

    def records(self, split: str) -> Records:
        try:
            source = self.builder.as_data_source(
                split, deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES
            )
        except (KeyError, ValueError, AssertionError) as e:
            have = ", ".join(self.builder.info.splits) or "none recorded"
            raise DataError(f"Split {split!r} not in {self.name!r} (splits: {have}): {e}") from e
        return source.data_source  # array_record's reader: __len__ and __getitems__.

    def parse(self, serialized: tf.Tensor) -> Example:
        # TFDS stores an Image as its encoded bytes and a ClassLabel as int64 under the
        # feature's name; parsing only these two, a vector at a time, is what keeps reads
        # cheap (the pp string decodes).
        return parse_image_and_labels(serialized, "image", self.label_key, self.multi_label)


def parse_image_and_labels(
    serialized: tf.Tensor, image_key: str, label_key: str, multi_label: bool
) -> Example:
    """tf.train.Examples [n] -> {'image': [n] bytes, 'label': [n] or ragged [n, (k)] int64}."""
    label_spec = (
        tf.io.VarLenFeature(tf.int64) if multi_label else tf.io.FixedLenFeature([], tf.int64)
    )
    ex = tf.io.parse_example(
        serialized, {image_key: tf.io.FixedLenFeature([], tf.string), label_key: label_spec}
    )
    label = ex[label_key]
    if multi_label:
        label = tf.RaggedTensor.from_sparse(label)  # Unbatches into [k] vectors.
    return {"image": ex[image_key], "label": label}


def open_source(config: ml_collections.ConfigDict) -> Source:
    """The source named by `config.dataset` (TFDS name, preset, digits, path, arrayrecord:)."""
    if config.dataset.startswith(records.PREFIXES):
        return records.ShardedSource.open(config.dataset)
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
