"""Per-process tf.data pipelines: this process's rows of each global batch, preprocessed.

Positions come from `vit_jax.data.order`; the records at those positions are read by random
access and parsed, then the op string preprocesses each example with its own seed, derived
from `config.seed` and the example's position. Nothing depends on what came before in the
stream, so a pipeline started at any batch gives exactly the batches an uninterrupted one
gives from there: the data position is the batch index, not tf.data's internal state.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from vit_jax.data import order, pp
from vit_jax.data.dataset import Dataset
from vit_jax.data.errors import DataError
from vit_jax.data.pp.mixup import mixup
from vit_jax.data.sources import Records, Source

# Streams of randomness, kept apart by folding a different constant into the seed.
_EXAMPLE_RNG, _MIXUP_RNG = 1, 2
_READ_CHUNK = 32  # Records fetched per call into Python; amortises its overhead.
POSITION_KEY = "_position"  # Stream position of each example, kept until preprocessing.


def _seed(seed: int, stream: int) -> tf.Tensor:
    return tf.constant([seed, stream], tf.int64)  # [2]


class UnreadableRecordError(DataError):
    """A record that cannot be read or parsed; the message names it."""


def _reader(records: Records, split: str, source_name: str):
    """`read(indices [n] int64) -> serialized records [n]`, in Python (random access)."""

    def read(indices: np.ndarray) -> np.ndarray:
        try:
            # One record at a time: array_record's __getitems__ hands reads to a thread pool,
            # which measured 1.9x slower per record on a busy core.
            return np.array([records[i] for i in indices.tolist()], dtype=object)
        except Exception as e:  # array_record raises plain RuntimeErrors for bad files.
            raise UnreadableRecordError(
                f"Cannot read records {indices.tolist()} of {source_name} {split!r}: {e}"
            ) from e

    return read


def read_examples(
    source: Source, records: Records, split: str, positions: tf.data.Dataset, to_indices
) -> tf.data.Dataset:
    """Vectors of positions -> examples {'image': bytes, 'label': ..., POSITION_KEY: int64}.

    `to_indices(positions [n]) -> example indices [n]` maps stream positions to records.
    Indices, reads and parsing run a vector at a time; examples come out one by one.
    """
    read = _reader(records, split, source.name)

    def fetch(position: tf.Tensor) -> dict[str, tf.Tensor]:  # position: [n]
        serialized = tf.numpy_function(read, [to_indices(position)], tf.string, stateful=False)
        serialized.set_shape(position.shape)
        return {**source.parse(serialized), POSITION_KEY: position}

    ds = positions.map(fetch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.unbatch()


def find_undecodable(source: Source, records: Records, split: str, indices: Sequence[int]) -> str:
    """Names the first of `indices` whose record cannot be read, parsed or decoded ('' if none).

    Run eagerly after a pipeline failure: tf.data's own errors do not say which example.
    """
    for index in indices:
        try:
            raw = records[index]
            image = source.parse(tf.constant([raw]))["image"][0]
            tf.io.decode_image(image, channels=3, expand_animations=False)
        except Exception as e:  # Whatever the reader, parser or decoder raise.
            detail = (getattr(e, "message", None) or str(e)).strip().splitlines()[0]
            return f"example {index} of {source.name} split {split!r} is unreadable ({detail})"
    return ""


def train_indices(
    dataset: Dataset, batch_index: int, global_batch: int, local_batch: int, shard_index: int
) -> list[int]:
    """The example indices of this process's rows of training batch `batch_index`."""
    first = batch_index * global_batch + shard_index * local_batch
    positions = tf.range(first, first + local_batch, dtype=tf.int64)
    indices = order.example_indices(positions, len(dataset.train_records), dataset.seed)
    return indices.numpy().tolist()


def _preprocess(
    ds: tf.data.Dataset, ops: str, crop: int, num_classes: int, kind: str, seed: int
) -> tf.data.Dataset:
    """Maps the `ops` string over `ds`, checking it gives image [crop, crop, 3], label [N]."""
    op = pp.parse(ops)
    base = _seed(seed, _EXAMPLE_RNG)

    def apply(ex: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        ex = dict(ex)
        position = ex.pop(POSITION_KEY)
        return op({**ex, pp.RNG_KEY: tf.random.experimental.stateless_fold_in(base, position)})

    spec = ds.map(apply).element_spec  # Checked in Python: errors inside map get wrapped.
    if "image" not in spec or "label" not in spec:
        raise DataError(f"pp.{kind}_ops {ops!r} must produce 'image' and 'label'.")
    image, label = spec["image"].shape, spec["label"].shape
    if image.as_list() != [crop, crop, 3] or label.as_list() != [num_classes]:
        raise DataError(
            f"pp.{kind}_ops {ops!r} gives image {image} and label {label}; expected "
            f"[{crop}, {crop}, 3] and [{num_classes}] (pp.crop, number of classes)."
        )

    def apply_and_cast(ex: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        out = apply(ex)
        return {
            "image": tf.cast(out["image"], tf.float32),
            "label": tf.cast(out["label"], tf.float32),
        }

    return ds.map(apply_and_cast, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _options(ds: tf.data.Dataset) -> tf.data.Dataset:
    options = tf.data.Options()
    options.deterministic = True  # Parallel maps keep the order: reproducible and resumable.
    return ds.with_options(options)


def train_dataset(
    dataset: Dataset, *, global_batch: int, local_batch: int, shard_index: int, start_batch: int
) -> tf.data.Dataset:
    """Endless batches {'image': [b, H, W, 3], 'label': [b, N]} of this process's rows,
    from global batch `start_batch` on."""
    num_examples, seed = len(dataset.train_records), dataset.seed
    if num_examples == 0:
        raise DataError(
            f"Training split {dataset.train_split!r} of {dataset.source.name} is empty."
        )
    positions = order.local_positions(
        start_batch, global_batch, shard_index * local_batch, local_batch, None, _READ_CHUNK
    )
    ds = read_examples(
        dataset.source,
        dataset.train_records,
        dataset.train_split,
        positions,
        lambda p: order.example_indices(p, num_examples, seed),
    )
    ds = _preprocess(ds, dataset.train_ops, dataset.crop, dataset.source.num_classes, "train", seed)
    ds = ds.batch(local_batch, drop_remainder=True)
    if dataset.mixup_alpha > 0:
        # Mixing pairs rows within this process's part of the batch, keyed by the batch index.
        base = _seed(seed, shard_index * 16 + _MIXUP_RNG)
        alpha = dataset.mixup_alpha
        ds = ds.enumerate(start=start_batch).map(
            lambda i, b: mixup(b, tf.random.experimental.stateless_fold_in(base, i), alpha)
        )
    return _options(ds.prefetch(tf.data.AUTOTUNE))


def eval_batches(dataset: Dataset, global_batch: int) -> int:
    """Batches of one pass over the test split: ceil(N / B), the same on every process."""
    return -(-len(dataset.test_records) // global_batch)


def eval_dataset(
    dataset: Dataset, *, global_batch: int, local_batch: int, shard_index: int
) -> tf.data.Dataset:
    """This process's rows of every eval batch, padded, with a 'mask' [b]."""
    num_examples = len(dataset.test_records)
    num_batches = eval_batches(dataset, global_batch)
    row_offset = shard_index * local_batch
    valid = order.valid_eval_rows(num_examples, global_batch, row_offset, local_batch)
    positions = order.local_positions(0, global_batch, row_offset, local_batch, valid, _READ_CHUNK)
    ds = read_examples(
        dataset.source,
        dataset.test_records,
        dataset.test_split,
        positions,
        lambda p: p,  # Evaluation reads the split in order.
    )
    ds = _preprocess(ds, dataset.test_ops, dataset.crop, dataset.source.num_classes, "test", 0)
    ds = ds.map(lambda ex: {**ex, "mask": tf.constant(1.0)})
    # Every process runs the same number of batches (collectives would hang otherwise), so
    # its rows past the end of the split are all-zero examples of mask 0.
    zeros = tf.nest.map_structure(lambda s: tf.zeros(s.shape, s.dtype), ds.element_spec)
    ds = ds.concatenate(tf.data.Dataset.from_tensors(zeros).repeat())
    ds = ds.take(num_batches * local_batch).batch(local_batch, drop_remainder=True)
    return _options(ds.prefetch(tf.data.AUTOTUNE))
