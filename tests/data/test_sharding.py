"""Per-process reading (2 simulated processes) and the batch layout over the mesh."""

from __future__ import annotations

import collections

import jax
import numpy as np
import pytest

from vit_jax import data
from vit_jax.data import pipeline
from vit_jax.data.info import resolve_settings
from vit_jax.data.sharding import batch_sharding, local_rows


def _read_all(source, split: str, shard: int, count: int, train: bool = False) -> list[bytes]:
    ds = source.read(split, shard, count, train=train, seed=0)
    return [ex["image"] for ex in ds.as_numpy_iterator()]


@pytest.mark.parametrize("split", ["test", "train[:10%]", "train[50%:55%]"])
def test_two_processes_read_disjoint_covering_shards(digits_config, split):
    source = resolve_settings(digits_config()).source
    full = collections.Counter(_read_all(source, split, 0, 1))
    shards = [_read_all(source, split, i, 2, train=True) for i in range(2)]
    assert collections.Counter(shards[0]) + collections.Counter(shards[1]) == full
    assert [len(s) for s in shards] == [source.num_examples(split, i, 2) for i in range(2)]
    assert abs(len(shards[0]) - len(shards[1])) <= 1


def test_two_processes_train_streams_are_disjoint(image_folder, make_config, tmp_path):
    root = image_folder({"train": {"a": 12, "b": 12}, "test": {"a": 1}})  # All distinct.
    cfg = make_config(
        str(tmp_path / "tfds"),
        dataset=root,
        pp__crop=8,
        pp__train_ops="decode|resize(8)|value_range(-1, 1)|onehot(2)",
    )
    settings = resolve_settings(cfg)
    seen = []
    for shard in range(2):
        ds = pipeline.train_dataset(settings, cfg, local_batch=4, shard_index=shard, shard_count=2)
        images = np.concatenate([b["image"] for b in ds.take(3).as_numpy_iterator()])  # 1 epoch
        seen.append({im.tobytes() for im in images})
    assert len(seen[0]) == len(seen[1]) == 12 and not seen[0] & seen[1]


def test_two_processes_eval_same_batch_count_every_example_once(digits_config):
    cfg = digits_config(batch_eval=32)
    settings = resolve_settings(cfg)
    num_batches = pipeline.eval_batches(settings, local_batch=16, shard_count=2)
    assert num_batches == 12  # 180 examples per process -> 11.25 batches of 16.
    labels = np.zeros(10)
    for shard in range(2):
        ds = pipeline.eval_dataset(
            settings, local_batch=16, num_batches=num_batches, shard_index=shard, shard_count=2
        )
        batches = list(ds.as_numpy_iterator())
        assert len(batches) == num_batches
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
