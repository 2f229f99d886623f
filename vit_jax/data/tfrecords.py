"""JFT-style pre-training input: sharded TFRecords, local or on `gs://`, too big for one host.

Use it with `config.dataset = 'tfrecord:<dir>'`. The directory holds
  <split>-00000-of-01024.tfrecord ...  tf.train.Example with `image` (encoded JPEG/PNG bytes)
                                       and `labels` (int64 list: one or several classes),
  info.json                            {"num_classes": N, "multi_label": bool,
                                        "num_examples": {"<split>": n, ...},
                                        "label_names": [...] (optional)}
`write_split` and `write_info` produce exactly that. Training reads give each host a
disjoint subset of the files, shuffle the file order every epoch (seeded) and interleave
several files in parallel; the pipeline's bounded shuffle buffer mixes examples further.
Evaluation reads give each host every n-th example, so per-host counts are exact.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable

import tensorflow as tf

from vit_jax.data.errors import DataError
from vit_jax.data.presets import DatasetPreset

PREFIX = "tfrecord:"
INFO_FILE = "info.json"
_CYCLE_LENGTH = 16  # Files read concurrently per host.


def shard_path(directory: str, split: str, index: int, count: int) -> str:
    return f"{directory}/{split}-{index:05d}-of-{count:05d}.tfrecord"


def write_split(
    directory: str, split: str, examples: Iterable[tuple[bytes, list[int]]], num_shards: int
) -> int:
    """Writes (encoded image, labels) pairs round-robin into `num_shards` files; returns count."""
    tf.io.gfile.makedirs(directory)
    writers = [
        tf.io.TFRecordWriter(shard_path(directory, split, i, num_shards)) for i in range(num_shards)
    ]
    count = 0
    for count, (image, labels) in enumerate(examples, start=1):
        example = tf.train.Example(
            features=tf.train.Features(
                feature={
                    "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image])),
                    "labels": tf.train.Feature(int64_list=tf.train.Int64List(value=list(labels))),
                }
            )
        )
        writers[(count - 1) % num_shards].write(example.SerializeToString())
    for w in writers:
        w.close()
    return count


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


def _parse(serialized: tf.Tensor, multi_label: bool) -> dict[str, tf.Tensor]:
    ex = tf.io.parse_single_example(
        serialized,
        {
            "image": tf.io.FixedLenFeature([], tf.string),
            "labels": tf.io.VarLenFeature(tf.int64),
        },
    )
    labels = tf.sparse.to_dense(ex["labels"])  # [k]
    return {"image": ex["image"], "label": labels if multi_label else labels[0]}


@dataclasses.dataclass
class TfrecordSource:
    """A directory of sharded TFRecords described by `info.json`."""

    directory: str
    name: str
    num_classes: int
    label_names: list[str] | None
    multi_label: bool
    defaults: DatasetPreset
    counts: dict[str, int]

    @classmethod
    def open(cls, directory: str) -> TfrecordSource:
        directory = directory.rstrip("/")
        path = f"{directory}/{INFO_FILE}"
        if not tf.io.gfile.exists(path):
            raise DataError(f"{path} not found; write it with vit_jax.data.tfrecords.write_info.")
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

    def _files(self, split: str) -> list[str]:
        if split not in self.counts:
            raise DataError(
                f"Split {split!r} not in {self.directory}/{INFO_FILE} (have: "
                f"{', '.join(self.counts)}); TFRecord sources take whole splits, no slices."
            )
        files = sorted(tf.io.gfile.glob(f"{self.directory}/{split}-*"))
        if not files:
            raise DataError(f"No files match {self.directory}/{split}-*.")
        return files

    def num_examples(self, split: str, shard_index: int = 0, shard_count: int = 1) -> int:
        self._files(split)  # Validates the split name.
        # Matches `read(train=False)`: shard i gets examples i, i + n, i + 2n, ...
        return math.ceil(max(self.counts[split] - shard_index, 0) / shard_count)

    def read(
        self, split: str, shard_index: int, shard_count: int, *, train: bool, seed: int
    ) -> tf.data.Dataset:
        files = self._files(split)
        if train:
            if len(files) < shard_count:
                raise DataError(
                    f"{len(files)} files for {split!r} cannot give {shard_count} hosts one "
                    "each; write at least as many shards as hosts."
                )
            files = files[shard_index::shard_count]  # Disjoint per host.
        ds = tf.data.Dataset.from_tensor_slices(files)
        if train:
            ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
        ds = ds.interleave(
            tf.data.TFRecordDataset,
            cycle_length=min(_CYCLE_LENGTH, len(files)),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,  # Same order every run: resumable and reproducible.
        )
        if not train:
            ds = ds.shard(shard_count, shard_index)
        return ds.map(lambda s: _parse(s, self.multi_label), num_parallel_calls=tf.data.AUTOTUNE)
