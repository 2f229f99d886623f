"""Per-process reading (simulated processes) and the batch layout over the mesh."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from vit_jax import data
from vit_jax.data import pipeline
from vit_jax.sharding import batch_sharding, local_rows


def _train_rows(dataset, global_batch: int, processes: int, batches: int) -> np.ndarray:
    """Images of `batches` global batches as `processes` simulated processes read them."""
    local = global_batch // processes
    per_process = [
        list(
            pipeline.train_dataset(
                dataset, global_batch=global_batch, local_batch=local, shard_index=i, start_batch=0
            )
            .take(batches)
            .as_numpy_iterator()
        )
        for i in range(processes)
    ]
    return np.stack(
        [np.concatenate([p[b]["image"] for p in per_process]) for b in range(batches)]
    )  # [batches, global_batch, H, W, 3]


def test_processes_read_their_rows_of_the_same_global_batches(image_folder, make_config, tmp_path):
    root = image_folder({"train": {"a": 12, "b": 12}, "test": {"a": 1}})  # All distinct.
    cfg = make_config(str(tmp_path / "tfds"), dataset=root, pp__crop=8, pp__aug="light1")
    dataset = data.open_dataset(cfg)
    one = _train_rows(dataset, 8, 1, 6)  # Two epochs of 24.
    # Any number of processes sees exactly the same global batches, each process its rows:
    # a run resumed on another number of hosts loses or repeats no example.
    np.testing.assert_array_equal(_train_rows(dataset, 8, 2, 6), one)
    np.testing.assert_array_equal(_train_rows(dataset, 8, 4, 6), one)
    for epoch in one.reshape(2, 24, -1):
        assert len({row.tobytes() for row in epoch}) == 24  # Every example once per epoch.


def test_two_processes_eval_same_batch_count_every_example_once(digits_config):
    dataset = data.open_dataset(digits_config(batch_eval=32))
    assert pipeline.eval_batches(dataset, 32) == 12  # ceil(360 / 32)
    labels = np.zeros(10)
    for shard in range(2):
        ds = pipeline.eval_dataset(dataset, global_batch=32, local_batch=16, shard_index=shard)
        batches = list(ds.as_numpy_iterator())
        assert len(batches) == 12
        for b in batches:
            labels += (b["label"] * b["mask"][:, None]).sum(0)
            assert (b["image"][b["mask"] == 0] == 0).all()
    assert labels.sum() == 360 and labels.min() >= 34


def test_local_rows_on_the_mesh(mesh):
    sharding = batch_sharding(mesh, ("data", "fsdp"))
    assert sharding.spec == jax.sharding.PartitionSpec(("data", "fsdp"))
    assert local_rows(16, sharding, "config.batch") == (16, 0, 1)  # One process: all rows.
    model_mesh = jax.make_mesh((4, 2), ("data", "model"))
    assert local_rows(8, batch_sharding(model_mesh, ("data", "fsdp")), "b") == (8, 0, 1)
    replicated = batch_sharding(jax.make_mesh((8,), ("model",)), ("data",))
    assert local_rows(3, replicated, "b") == (3, 0, 1)


def test_indivisible_batch_is_a_clear_error(digits_config, mesh):
    with pytest.raises(ValueError, match=r"config.batch=12 .* multiple of 8") as err:
        data.make_train_iterator(digits_config(batch=12), mesh)
    assert "use e.g. 8 or 16" in str(err.value)
    with pytest.raises(ValueError, match=r"config.batch_eval=20"):
        data.make_eval_iterator(digits_config(batch_eval=20), mesh)
