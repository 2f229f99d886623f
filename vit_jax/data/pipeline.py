"""Per-process tf.data pipelines: one shard of a split, preprocessed and batched.

The shard (`shard_index` of `shard_count`) is an explicit argument, so tests can build the
pipelines of several simulated processes in one. All randomness is stateless and derived
from `config.seed`, the shard and each element's position in the stream, which makes two
runs identical and lets a tf.data checkpoint resume exactly.
"""

from __future__ import annotations

import ml_collections
import tensorflow as tf

from vit_jax.data import pp
from vit_jax.data.errors import DataError
from vit_jax.data.info import Settings
from vit_jax.data.pp.mixup import mixup

# Streams of randomness, kept apart by folding a different constant into the seed.
_EXAMPLE_RNG, _MIXUP_RNG = 1, 2


def _seed(seed: int, shard_index: int, stream: int) -> tf.Tensor:
    return tf.constant([seed, shard_index * 16 + stream], tf.int64)  # [2]


def _with_rng(ds: tf.data.Dataset, base: tf.Tensor) -> tf.data.Dataset:
    """Adds each example's own seed `_rng` = fold_in(base, position in the stream)."""

    def add(i: tf.Tensor, ex: dict) -> dict:
        return {**ex, pp.RNG_KEY: tf.random.experimental.stateless_fold_in(base, i)}

    return ds.enumerate().map(add)


def _preprocess(
    ds: tf.data.Dataset, ops: str, crop: int, num_classes: int, kind: str
) -> tf.data.Dataset:
    """Maps the `ops` string over `ds`, checking it gives image [crop, crop, 3], label [N]."""
    ds = ds.map(pp.parse(ops), num_parallel_calls=tf.data.AUTOTUNE)
    spec = ds.element_spec  # Checked here, in Python: errors raised inside map get wrapped.
    if "image" not in spec or "label" not in spec:
        raise DataError(f"pp.{kind}_ops {ops!r} must produce 'image' and 'label'.")
    image, label = spec["image"].shape, spec["label"].shape
    if image.as_list() != [crop, crop, 3] or label.as_list() != [num_classes]:
        raise DataError(
            f"pp.{kind}_ops {ops!r} gives image {image} and label {label}; expected "
            f"[{crop}, {crop}, 3] and [{num_classes}] (pp.crop, number of classes)."
        )
    return ds.map(
        lambda ex: {
            "image": tf.cast(ex["image"], tf.float32),
            "label": tf.cast(ex["label"], tf.float32),
        }
    )


def _options(ds: tf.data.Dataset) -> tf.data.Dataset:
    options = tf.data.Options()
    options.deterministic = True  # Parallel maps keep the order: reproducible and resumable.
    return ds.with_options(options)


def train_dataset(
    settings: Settings,
    config: ml_collections.ConfigDict,
    *,
    local_batch: int,
    shard_index: int,
    shard_count: int,
) -> tf.data.Dataset:
    """Endless shuffled batches {'image': [b, H, W, 3], 'label': [b, N]} of one shard."""
    src = settings.source
    ds = src.read(settings.train_split, shard_index, shard_count, train=True, seed=config.seed)
    if config.shuffle_buffer > 1:
        ds = ds.shuffle(config.shuffle_buffer, seed=config.seed, reshuffle_each_iteration=True)
    # Shuffling before repeating keeps epochs whole: each example once per epoch, which
    # matters for small fine-tuning sets (a buffer larger than the data would otherwise mix
    # copies from many epochs).
    ds = ds.repeat()
    ds = _with_rng(ds, _seed(config.seed, shard_index, _EXAMPLE_RNG))
    ds = _preprocess(ds, settings.train_ops, settings.crop, src.num_classes, "train")
    ds = ds.batch(local_batch, drop_remainder=True)
    if settings.mixup_alpha > 0:
        base = _seed(config.seed, shard_index, _MIXUP_RNG)
        alpha = settings.mixup_alpha
        ds = ds.enumerate().map(
            lambda i, b: mixup(b, tf.random.experimental.stateless_fold_in(base, i), alpha)
        )
    return _options(ds.prefetch(tf.data.AUTOTUNE))


def eval_batches(settings: Settings, local_batch: int, shard_count: int) -> int:
    """Batches every process must run: enough for the largest shard of the test split."""
    counts = [
        settings.source.num_examples(settings.test_split, i, shard_count)
        for i in range(shard_count)
    ]
    return -(-max(counts) // local_batch)  # ceil


def eval_dataset(
    settings: Settings, *, local_batch: int, num_batches: int, shard_index: int, shard_count: int
) -> tf.data.Dataset:
    """`num_batches` batches of one shard of the test split, padded, with a 'mask' [b]."""
    src = settings.source
    ds = src.read(settings.test_split, shard_index, shard_count, train=False, seed=0)
    ds = _with_rng(ds, _seed(0, shard_index, _EXAMPLE_RNG))
    ds = _preprocess(ds, settings.test_ops, settings.crop, src.num_classes, "test")
    ds = ds.map(lambda ex: {**ex, "mask": tf.constant(1.0)})
    # Every process runs the same number of batches (collectives would hang otherwise), so
    # shorter shards and the last batch are topped up with all-zero examples of mask 0.
    zeros = tf.nest.map_structure(lambda s: tf.zeros(s.shape, s.dtype), ds.element_spec)
    ds = ds.concatenate(tf.data.Dataset.from_tensors(zeros).repeat())
    ds = ds.take(num_batches * local_batch).batch(local_batch, drop_remainder=True)
    return _options(ds.prefetch(tf.data.AUTOTUNE))
