"""JFT-style pre-training input: sharded ArrayRecord files, local or on `gs://`.

Use it with `config.dataset = 'arrayrecord:<dir>'`. The directory holds
  <split>-00000-of-01024.array_record ... tf.train.Example with `image` (encoded JPEG/PNG
                                          bytes) and `labels` (int64 list: one or more),
  info.json                               {"num_classes": N, "multi_label": bool,
                                           "num_examples": {"<split>": n, ...},
                                           "label_names": [...] (optional)}
`write_split` and `write_info` produce exactly that. ArrayRecord gives random access to any
record of any file, so the training order is a seeded global permutation (no shuffle
buffer, no per-host file assignment) and each process reads only the records of its rows.
Directories of TFRecord shards (`tfrecord:<dir>`, the earlier format) convert one to one:
`python -m vit_jax.data.records convert <tfrecord dir> <new dir>`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Iterable, Sequence

import tensorflow as tf
from array_record.python import array_record_data_source, array_record_module

from vit_jax import errors
from vit_jax.data.errors import DataError
from vit_jax.data.presets import DatasetPreset

PREFIX = "arrayrecord:"
LEGACY_PREFIX = "tfrecord:"  # Read no more: refused with the command that converts it.
PREFIXES = (PREFIX, LEGACY_PREFIX)
INFO_FILE = "info.json"
SUFFIX = ".array_record"
# One record per chunk: reading any record decodes only that record (TFDS writes the same).
_WRITER_OPTIONS = "group_size:1"


def shard_path(directory: str, split: str, index: int, count: int) -> str:
    return f"{directory}/{split}-{index:05d}-of-{count:05d}{SUFFIX}"


def serialize(image: bytes, labels: Iterable[int]) -> bytes:
    """A tf.train.Example with `image` (encoded bytes) and `labels` (int64 list)."""
    feature = {
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image])),
        "labels": tf.train.Feature(int64_list=tf.train.Int64List(value=list(labels))),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def write_split(
    directory: str, split: str, examples: Sequence[tuple[bytes, list[int]]], num_shards: int
) -> int:
    """Writes (encoded image, labels) pairs into `num_shards` files, in order; returns the count.

    Shard i holds examples [i * n // num_shards, (i + 1) * n // num_shards): one file is open
    at a time, so thousands of shards need no more file handles than one.
    """
    tf.io.gfile.makedirs(directory)
    n = len(examples)
    for i in range(num_shards):
        writer = array_record_module.ArrayRecordWriter(
            shard_path(directory, split, i, num_shards), _WRITER_OPTIONS
        )
        for image, labels in examples[i * n // num_shards : (i + 1) * n // num_shards]:
            writer.write(serialize(image, labels))
        writer.close()
    return n


def write_info(
    directory: str,
    num_classes: int,
    num_examples: dict[str, int],
    multi_label: bool,
    label_names: list[str] | None = None,
) -> None:
    info = {"num_classes": num_classes, "multi_label": multi_label, "num_examples": num_examples}
    if label_names:
        info["label_names"] = label_names
    with tf.io.gfile.GFile(f"{directory}/{INFO_FILE}", "w") as f:
        json.dump(info, f, indent=1)


def convert_tfrecords(source_dir: str, target_dir: str) -> dict[str, int]:
    """Rewrites a `tfrecord:` directory (TFRecord shards + info.json) as ArrayRecord shards.

    Each `<split>-i-of-n.tfrecord` becomes `<split>-i-of-n.array_record` with the same
    records in the same order. Returns the records written per split.
    """
    source_dir, target_dir = source_dir.rstrip("/"), target_dir.rstrip("/")
    info_path = f"{source_dir}/{INFO_FILE}"
    if not tf.io.gfile.exists(info_path):
        raise DataError(f"{info_path} not found: {source_dir} is not a tfrecord: directory.")
    with tf.io.gfile.GFile(info_path) as f:
        info = json.load(f)
    tf.io.gfile.makedirs(target_dir)
    written = {}
    for split in info["num_examples"]:
        files = sorted(tf.io.gfile.glob(f"{source_dir}/{split}-*.tfrecord"))
        if not files:
            raise DataError(f"No files match {source_dir}/{split}-*.tfrecord.")
        written[split] = 0
        for i, path in enumerate(files):
            target = shard_path(target_dir, split, i, len(files))
            writer = array_record_module.ArrayRecordWriter(target, _WRITER_OPTIONS)
            for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
                writer.write(record)
                written[split] += 1
            writer.close()
    with tf.io.gfile.GFile(f"{target_dir}/{INFO_FILE}", "w") as f:
        json.dump(info, f, indent=1)
    return written


@dataclasses.dataclass
class ShardedSource:
    """A directory of sharded ArrayRecord files described by `info.json`."""

    directory: str
    name: str
    num_classes: int
    label_names: list[str] | None
    multi_label: bool
    defaults: DatasetPreset
    counts: dict[str, int]

    @classmethod
    def open(cls, dataset: str) -> ShardedSource:
        """`dataset` is 'arrayrecord:<dir>'; 'tfrecord:<dir>' is refused with how to convert."""
        if dataset.startswith(LEGACY_PREFIX):
            directory = dataset[len(LEGACY_PREFIX) :].rstrip("/")
            raise DataError(
                f"dataset={dataset!r}: TFRecord shards are read sequentially, so resuming needs "
                "a shuffle buffer in every checkpoint; vit_jax now reads ArrayRecord shards "
                "(random access, a few integers of data position). Convert once with `python "
                f"-m vit_jax.data.records convert {directory} {directory}_arrayrecord` and set "
                f"dataset='{PREFIX}{directory}_arrayrecord'."
            )
        directory = dataset[len(PREFIX) :].rstrip("/")
        path = f"{directory}/{INFO_FILE}"
        if not tf.io.gfile.exists(path):
            raise DataError(f"{path} not found; write it with vit_jax.data.records.write_info.")
        with tf.io.gfile.GFile(path) as f:
            info = json.load(f)
        counts = info["num_examples"]
        test = "test" if "test" in counts else "train"
        # Pre-training resolution: 224, as for ImageNet-21k.
        defaults = DatasetPreset(directory, "train", test, test, info["num_classes"], crop=224)
        return cls(
            directory=directory,
            name=directory,
            num_classes=info["num_classes"],
            label_names=info.get("label_names"),
            multi_label=info["multi_label"],
            defaults=defaults,
            counts=counts,
        )

    def records(self, split: str) -> array_record_data_source.ArrayRecordDataSource:
        if split not in self.counts:
            raise DataError(
                f"Split {split!r} not in {self.directory}/{INFO_FILE} (have: "
                f"{', '.join(self.counts)}); sharded sources take whole splits, no slices."
            )
        files = sorted(tf.io.gfile.glob(f"{self.directory}/{split}-*{SUFFIX}"))
        if not files:
            raise DataError(f"No files match {self.directory}/{split}-*{SUFFIX}.")
        source = array_record_data_source.ArrayRecordDataSource(files)
        if len(source) != self.counts[split]:
            raise DataError(
                f"{self.directory}: {len(files)} {split} files hold {len(source)} records, but "
                f"{INFO_FILE} says {self.counts[split]}; rewrite {INFO_FILE} or the missing files."
            )
        return source

    def parse(self, serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        ex = tf.io.parse_example(
            serialized,
            {
                "image": tf.io.FixedLenFeature([], tf.string),
                "labels": tf.io.VarLenFeature(tf.int64),
            },
        )
        if self.multi_label:  # Unbatches into [k] vectors.
            return {"image": ex["image"], "label": tf.RaggedTensor.from_sparse(ex["labels"])}
        labels = tf.RaggedTensor.from_sparse(ex["labels"])
        tf.debugging.assert_equal(
            labels.row_lengths(),
            tf.ones_like(labels.row_lengths()),
            message=f"{self.directory}: single-label examples need exactly one label each; "
            "write info.json with multi_label true if some have several",
        )
        return {"image": ex["image"], "label": labels.flat_values}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vit_jax.data.records",
        description="Convert a tfrecord: directory (TFRecord shards + info.json) to ArrayRecord.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    convert = sub.add_parser("convert", help="TFRecord shards -> ArrayRecord shards.")
    convert.add_argument("source_dir")
    convert.add_argument("target_dir")
    args = parser.parse_args(argv)
    if os.path.abspath(args.source_dir) == os.path.abspath(args.target_dir):
        return errors.report("write the ArrayRecord files to another directory.")
    try:
        written = convert_tfrecords(args.source_dir, args.target_dir)
    except DataError as e:
        return errors.report(e)
    counts = ", ".join(f"{split}: {n}" for split, n in written.items())
    print(f"Wrote {args.target_dir} ({counts}); use dataset='{PREFIX}{args.target_dir}'.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
