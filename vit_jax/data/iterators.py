"""The trainer-facing iterators: global sharded batches, device prefetch, save/restore."""

from __future__ import annotations

import collections
import io
from collections.abc import Iterator, Sequence

import jax
import ml_collections
import numpy as np
import tensorflow as tf
from jax.sharding import Mesh, NamedSharding

from vit_jax.data import pipeline
from vit_jax.data.info import resolve_settings
from vit_jax.data.sharding import batch_sharding, local_rows, to_global

Batch = dict[str, jax.Array]
HostBatch = dict[str, np.ndarray]
DATA_AXES = ("data", "fsdp")


def _to_numpy(batch: dict[str, tf.Tensor]) -> HostBatch:
    return {k: v.numpy() for k, v in batch.items()}


class TrainIterator:
    """Endless global batches with `prefetch` batches in flight to the devices.

    `save(path)` / `restore(path)` persist the exact position: the tf.data iterator state
    (shuffle buffer included) plus the batches already taken from it but not yet handed
    out, so a restored iterator continues with exactly the batch an uninterrupted one
    would have returned next.
    """

    def __init__(
        self, dataset: tf.data.Dataset, sharding: NamedSharding, global_batch: int, prefetch: int
    ):
        self._dataset = dataset
        self._sharding = sharding
        self._global_batch = global_batch
        self._prefetch = max(0, prefetch)
        self._tf_iter = iter(dataset)
        # Host copies stay with the device arrays so that `save` can write them out.
        self._queue: collections.deque[tuple[HostBatch, Batch]] = collections.deque()

    def __iter__(self) -> TrainIterator:
        return self

    def _enqueue(self, host: HostBatch) -> None:
        self._queue.append((host, to_global(host, self._sharding, self._global_batch)))

    def __next__(self) -> Batch:
        while len(self._queue) <= self._prefetch:
            self._enqueue(_to_numpy(next(self._tf_iter)))
        return self._queue.popleft()[1]

    @staticmethod
    def _prefix(path: str) -> str:
        return f"{path}-process{jax.process_index()}"

    def save(self, path: str) -> None:
        """Writes `<path>-process<i>.*` for this process (local paths or gs://)."""
        prefix = self._prefix(path)
        tf.train.Checkpoint(iterator=self._tf_iter).write(prefix)
        pending = {
            f"{i}/{k}": v for i, (host, _) in enumerate(self._queue) for k, v in host.items()
        }
        buf = io.BytesIO()
        np.savez(buf, num_pending=len(self._queue), **pending)
        with tf.io.gfile.GFile(f"{prefix}.pending.npz", "wb") as f:
            f.write(buf.getvalue())

    def restore(self, path: str) -> None:
        """Continues from the position written by `save(path)`."""
        prefix = self._prefix(path)
        tf.train.Checkpoint(iterator=self._tf_iter).read(prefix).assert_consumed()
        with tf.io.gfile.GFile(f"{prefix}.pending.npz", "rb") as f:
            saved = np.load(io.BytesIO(f.read()))
            pending = [
                {k.split("/", 1)[1]: saved[k] for k in saved.files if k.startswith(f"{i}/")}
                for i in range(int(saved["num_pending"]))
            ]
        self._queue.clear()
        for host in pending:
            self._enqueue(host)


class EvalIterator:
    """One pass over the whole eval split per `iter()`, padded, with a 'mask' field [B]."""

    def __init__(
        self,
        dataset: tf.data.Dataset,
        sharding: NamedSharding,
        global_batch: int,
        num_batches: int,
        prefetch: int,
    ):
        self._dataset = dataset
        self._sharding = sharding
        self._global_batch = global_batch
        self._num_batches = num_batches
        self._prefetch = max(0, prefetch)

    def __len__(self) -> int:
        return self._num_batches

    def __iter__(self) -> Iterator[Batch]:
        queue: collections.deque[Batch] = collections.deque()
        for batch in self._dataset:
            queue.append(to_global(_to_numpy(batch), self._sharding, self._global_batch))
            if len(queue) > self._prefetch:
                yield queue.popleft()
        yield from queue


def make_train_iterator(
    config: ml_collections.ConfigDict, mesh: Mesh, data_axes: Sequence[str] = DATA_AXES
) -> TrainIterator:
    """Endless {'image': [B, H, W, 3] f32 in [-1, 1], 'label': [B, N] f32}, B = config.batch."""
    settings = resolve_settings(config)
    sharding = batch_sharding(mesh, data_axes)
    local, shard_index, shard_count = local_rows(config.batch, sharding, "config.batch")
    ds = pipeline.train_dataset(
        settings, config, local_batch=local, shard_index=shard_index, shard_count=shard_count
    )
    return TrainIterator(ds, sharding, config.batch, config.prefetch)


def make_eval_iterator(
    config: ml_collections.ConfigDict, mesh: Mesh, data_axes: Sequence[str] = DATA_AXES
) -> EvalIterator:
    """The test split once per pass: batches of config.batch_eval with a 'mask' [B] f32."""
    settings = resolve_settings(config)
    sharding = batch_sharding(mesh, data_axes)
    local, shard_index, shard_count = local_rows(config.batch_eval, sharding, "config.batch_eval")
    num_batches = pipeline.eval_batches(settings, local, shard_count)
    ds = pipeline.eval_dataset(
        settings,
        local_batch=local,
        num_batches=num_batches,
        shard_index=shard_index,
        shard_count=shard_count,
    )
    return EvalIterator(ds, sharding, config.batch_eval, num_batches, config.prefetch)
