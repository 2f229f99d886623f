"""A stand-in for `vit_jax.data` with deterministic global batches, for trainer tests.

Every process computes the whole global batch of a step from (seed, step) and keeps its own
rows, so one process and several give the same batches. `nan_at` puts NaNs in one step's
images.
"""

from __future__ import annotations

import dataclasses
import json
import types
from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from vit_jax import data

NUM_CLASSES = 4
IMAGE_SIZE = 8
NUM_EVAL = 40

INFO = data.DatasetInfo(
    name="synthetic",
    num_classes=NUM_CLASSES,
    num_train_examples=1_000,
    num_eval_examples=NUM_EVAL,
    image_size=IMAGE_SIZE,
    channels=3,
    label_names=None,
)


def host_batch(seed: int, index: int, batch: int) -> dict[str, np.ndarray]:
    """Images whose first channel's mean encodes the class, plus one-hot labels."""
    rng = np.random.default_rng([seed, index])
    labels = rng.integers(0, NUM_CLASSES, batch)
    images = rng.normal(0.0, 0.5, (batch, IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32)
    images[..., 0] += (labels[:, None, None] - 1.5) * 0.5
    return {"image": images, "label": np.eye(NUM_CLASSES, dtype=np.float32)[labels]}


def to_global(batch: dict[str, np.ndarray], sharding: NamedSharding) -> dict[str, jax.Array]:
    return {
        k: jax.make_array_from_callback(v.shape, sharding, lambda index, v=v: v[index])
        for k, v in batch.items()
    }


class TrainIterator:
    def __init__(self, config, mesh: Mesh, data_axes: Sequence[str], nan_at: int | None):
        self.position = 0
        self._seed, self._batch, self._nan_at = config.seed, config.batch, nan_at
        self._sharding = NamedSharding(mesh, PartitionSpec(tuple(data_axes)))

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, jax.Array]:
        batch = host_batch(self._seed, self.position, self._batch)
        self.position += 1
        if self.position == self._nan_at:
            batch["image"][:] = np.nan
        return to_global(batch, self._sharding)

    def save(self, path: str) -> None:
        with open(f"{path}-process{jax.process_index()}.json", "w") as f:
            json.dump({"position": self.position}, f)

    def restore(self, path: str) -> None:
        with open(f"{path}-process{jax.process_index()}.json") as f:
            self.position = json.load(f)["position"]


@dataclasses.dataclass
class SyntheticData:
    """Has the functions of `vit_jax.data` that the trainer calls."""

    nan_at: int | None = None  # 1-based step whose batch is NaN.
    DataError = data.DataError

    def open_dataset(self, config) -> types.SimpleNamespace:
        del config
        return types.SimpleNamespace(info=INFO)

    def make_train_iterator(self, config, mesh, data_axes, dataset=None) -> TrainIterator:
        return TrainIterator(config, mesh, data_axes, self.nan_at)

    def make_eval_iterator(
        self, config, mesh, data_axes, dataset=None
    ) -> list[dict[str, jax.Array]]:
        """`NUM_EVAL` examples in batches of `batch_eval`, the last one padded (mask 0)."""
        sharding = NamedSharding(mesh, PartitionSpec(tuple(data_axes)))
        batches = []
        for index in range(-(-NUM_EVAL // config.batch_eval)):
            batch = host_batch(config.seed + 1, index, config.batch_eval)
            real = min(config.batch_eval, NUM_EVAL - index * config.batch_eval)
            batch["mask"] = (np.arange(config.batch_eval) < real).astype(np.float32)
            batches.append(to_global(batch, sharding))
        return batches


def tiny_synthetic_config():
    """tests/training/tiny_config.py adapted to the synthetic data: 8 px, 4 classes."""
    from tests.training import tiny_config

    config = tiny_config.get_config()
    config.batch = 16
    config.batch_eval = 16
    config.model.dtype = "float32"
    return config


def multiprocess_config():
    """Data and FSDP axes across processes; checkpoints, evaluation and the final .npz."""
    config = tiny_synthetic_config()
    config.mesh.update(data=4, fsdp=2)
    config.update(total_steps=4, eval_every=2, checkpoint_every=2, save_npz="final.npz")
    return config
