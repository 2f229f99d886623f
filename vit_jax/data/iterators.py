"""The trainer-facing iterators: global sharded batches, device prefetch, save/restore."""

from __future__ import annotations

import collections
import json
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import numpy as np
import tensorflow as tf
from jax.sharding import Mesh, NamedSharding
from ml_collections import ConfigDict

from vit_jax.data import pipeline
from vit_jax.data.dataset import Dataset, open_dataset
from vit_jax.data.errors import DataError
from vit_jax.sharding import DATA_AXES, batch_sharding, local_rows, to_global

Batch = dict[str, jax.Array]
HostBatch = dict[str, np.ndarray]
Axes = Sequence[str]  # Mesh axis names.


def _to_numpy(batch: dict[str, tf.Tensor]) -> HostBatch:
    return {k: v.numpy() for k, v in batch.items()}


class TrainIterator:
    """Endless global batches with `prefetch` batches in flight to the devices.

    The data position is the index of the next batch to hand out (`vit_jax.data.order`):
    `save(path)` writes it with what it depends on (dataset, split size, global batch, seed)
    as a few hundred bytes of JSON, whatever the dataset, the images or the number of
    processes; `restore(path)` checks those and restarts the pipeline at that batch.
    """

    def __init__(self, dataset: Dataset, sharding: NamedSharding, global_batch: int, prefetch: int):
        self._dataset = dataset
        self._sharding = sharding
        self._global_batch = global_batch
        self._prefetch = max(0, prefetch)
        self._local, self._shard_index, _ = local_rows(global_batch, sharding, "config.batch")
        self._queue: collections.deque[Batch] = collections.deque()
        self._start(0)

    def _start(self, batch_index: int) -> None:
        ds = pipeline.train_dataset(
            self._dataset,
            global_batch=self._global_batch,
            local_batch=self._local,
            shard_index=self._shard_index,
            start_batch=batch_index,
        )
        self._tf_iter = iter(ds)
        self._queue.clear()
        self._next_batch = batch_index  # Of the next batch `__next__` returns.
        self._fetched = batch_index  # Of the next batch read from tf.data.

    def __iter__(self) -> TrainIterator:
        return self

    def __next__(self) -> Batch:
        while len(self._queue) <= self._prefetch:
            host = _read_batch(self._tf_iter, f"training batch {self._fetched}", self._diagnose)
            self._queue.append(to_global(host, self._sharding, self._global_batch))
            self._fetched += 1
        self._next_batch += 1
        return self._queue.popleft()

    def _diagnose(self) -> str:
        """Which example of the batch being read (or the next, read ahead) is unreadable."""
        d = self._dataset
        indices = [
            index
            for batch_index in (self._fetched, self._fetched + 1)
            for index in pipeline.train_indices(
                d, batch_index, self._global_batch, self._local, self._shard_index
            )
        ]
        return pipeline.find_undecodable(d.source, d.train_records, d.train_split, indices)

    def state(self) -> dict[str, Any]:
        """The data position and what it is valid for."""
        return {
            "format": POSITION_FORMAT,
            "next_batch": self._next_batch,
            **_stream_identity(self._dataset, self._global_batch),
        }

    def save(self, path: str) -> None:
        """Writes `<path>.json` (process 0; the position is the same on every process)."""
        if jax.process_index() == 0:
            tf.io.gfile.makedirs(os.path.dirname(path) or ".")
            with tf.io.gfile.GFile(f"{path}.json", "w") as f:
                json.dump(self.state(), f, indent=1)

    def restore(self, path: str) -> None:
        """Continues from the position written by `save(path)`.

        Raises DataError, changing nothing, when the dataset, the training split, its size,
        the global batch or the seed differ from the saved run's.
        """
        saved = _read_position(path)
        now = _stream_identity(self._dataset, self._global_batch)
        changed = [
            f"{key}: {saved.get(key)!r} -> {value!r}"
            for key, value in now.items()
            if saved.get(key) != value
        ]
        if changed:
            raise DataError(
                "The data settings differ from those of the saved run ("
                + "; ".join(changed)
                + "), so its data position does not apply: the examples it has already "
                "seen could not be told from the rest. Resume with the original dataset, "
                "split, batch and seed, or start afresh in another workdir."
            )
        self._start(int(saved["next_batch"]))


POSITION_FORMAT = 2  # 1 was the tf.data iterator state of each process (shuffle buffer included).


def _stream_identity(dataset: Dataset, global_batch: int) -> dict[str, Any]:
    """What the meaning of a batch index depends on."""
    return {
        "dataset": dataset.name,
        "train_split": dataset.train_split,
        "num_train_examples": len(dataset.train_records),
        "batch": global_batch,
        "seed": dataset.seed,
    }


def _read_position(path: str) -> dict[str, Any]:
    file = f"{path}.json"
    if not tf.io.gfile.exists(file):
        older = tf.io.gfile.glob(f"{path}-process*")
        why = (
            "it was written by an earlier vit_jax, which saved tf.data's iterator state "
            "(shuffle buffer included) instead of a batch index"
            if older
            else "the file is missing"
        )
        raise DataError(
            f"No data position in {file}: {why}. Resume it with the vit_jax version that wrote "
            "it, or start afresh in another workdir (e.g. fine-tune from its .npz)."
        )
    with tf.io.gfile.GFile(file) as f:
        try:
            saved = json.load(f)
        except json.JSONDecodeError as e:
            raise DataError(f"The data position {file} is not valid JSON ({e}).") from e
    if saved.get("format") != POSITION_FORMAT or not isinstance(saved.get("next_batch"), int):
        raise DataError(f"{file} is not a vit_jax data position (format {POSITION_FORMAT}).")
    return saved


def _read_batch(
    tf_iter: Iterator[dict[str, tf.Tensor]], what: str, diagnose: Callable[[], str]
) -> HostBatch:
    """The next batch as NumPy; tf.data failures become a DataError naming the example."""
    try:
        batch = next(tf_iter)
    except tf.errors.OpError as e:
        culprit = diagnose()
        if culprit:
            raise DataError(
                f"Reading {what} failed: {culprit}. Remove or replace that image and prepare "
                "the dataset again (image folders are re-prepared when their files change)."
            ) from None
        first = (e.message or str(e)).strip().splitlines()[-1]
        raise DataError(f"Reading {what} failed: {first}") from None
    return _to_numpy(batch)


class EvalIterator:
    """One pass over the whole eval split per `iter()`, padded, with a 'mask' field [B]."""

    def __init__(self, dataset: Dataset, sharding: NamedSharding, global_batch: int, prefetch: int):
        local, shard_index, _ = local_rows(global_batch, sharding, "config.batch_eval")
        self._tf_dataset = pipeline.eval_dataset(
            dataset, global_batch=global_batch, local_batch=local, shard_index=shard_index
        )
        self._dataset = dataset
        self._sharding = sharding
        self._global_batch = global_batch
        self._num_batches = pipeline.eval_batches(dataset, global_batch)
        self._prefetch = max(0, prefetch)

    def __len__(self) -> int:
        return self._num_batches

    def __iter__(self) -> Iterator[Batch]:
        queue: collections.deque[Batch] = collections.deque()
        tf_iter = iter(self._tf_dataset)
        d, batch = self._dataset, self._global_batch

        def diagnose(i: int) -> str:  # The examples of batch i (and the next, read ahead).
            indices = range(i * batch, min((i + 2) * batch, len(d.test_records)))
            return pipeline.find_undecodable(d.source, d.test_records, d.test_split, indices)

        for i in range(self._num_batches):
            host = _read_batch(tf_iter, f"evaluation batch {i}", lambda i=i: diagnose(i))
            queue.append(to_global(host, self._sharding, self._global_batch))
            if len(queue) > self._prefetch:
                yield queue.popleft()
        yield from queue


def make_train_iterator(
    config: ConfigDict, mesh: Mesh, data_axes: Axes = DATA_AXES, dataset: Dataset | None = None
) -> TrainIterator:
    """Endless {'image': [B, H, W, 3] f32 in [-1, 1], 'label': [B, N] f32}, B = config.batch.

    Pass the run's `dataset` (`open_dataset(config)`) to avoid opening it again.
    """
    dataset = dataset or open_dataset(config)
    sharding = batch_sharding(mesh, data_axes)
    return TrainIterator(dataset, sharding, config.batch, config.prefetch)


def make_eval_iterator(
    config: ConfigDict, mesh: Mesh, data_axes: Axes = DATA_AXES, dataset: Dataset | None = None
) -> EvalIterator:
    """The test split once per pass: batches of config.batch_eval with a 'mask' [B] f32."""
    dataset = dataset or open_dataset(config)
    sharding = batch_sharding(mesh, data_axes)
    return EvalIterator(dataset, sharding, config.batch_eval, config.prefetch)
