"""The trainer-facing iterators: layout, determinism, exact resume, eval masks, targets."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from vit_jax import data

# RandAugment + mixup + label smoothing exercise every random stream of the pipeline.
AUGMENTED = dict(pp__crop=16, pp__aug="light2", pp__label_smoothing=0.1, prefetch=2)


def _take(iterator, n: int) -> list[dict[str, np.ndarray]]:
    return [jax.tree.map(np.asarray, next(iterator)) for _ in range(n)]


def _assert_same(a: list[dict], b: list[dict]) -> None:
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x["image"], y["image"])
        np.testing.assert_array_equal(x["label"], y["label"])


def test_train_batches_are_global_sharded_arrays(digits_config, mesh):
    batch = next(data.make_train_iterator(digits_config(pp__crop=16), mesh))
    expected = NamedSharding(mesh, PartitionSpec(("data", "fsdp")))
    for key, shape in [("image", (16, 16, 16, 3)), ("label", (16, 10))]:
        assert batch[key].shape == shape and batch[key].dtype == np.float32
        assert batch[key].sharding.is_equivalent_to(expected, len(shape))
    image = np.asarray(batch["image"])
    assert image.min() >= -1 and image.max() <= 1 and image.min() < 0 < image.max()
    np.testing.assert_array_equal(np.asarray(batch["label"]).sum(1), 1)


def test_same_seed_same_batches_other_seed_others(digits_config, mesh):
    first = _take(data.make_train_iterator(digits_config(**AUGMENTED), mesh), 3)
    _assert_same(first, _take(data.make_train_iterator(digits_config(**AUGMENTED), mesh), 3))
    other = _take(data.make_train_iterator(digits_config(seed=1, **AUGMENTED), mesh), 1)
    assert not np.array_equal(first[0]["image"], other[0]["image"])


def test_resume_continues_exactly(digits_config, mesh, tmp_path):
    cfg = digits_config(**AUGMENTED)
    uninterrupted = _take(data.make_train_iterator(cfg, mesh), 7)
    interrupted = data.make_train_iterator(cfg, mesh)
    _assert_same(_take(interrupted, 4), uninterrupted[:4])
    interrupted.save(str(tmp_path / "ckpt" / "data"))  # Prefetched batches are pending now.
    del interrupted
    resumed = data.make_train_iterator(cfg, mesh)
    resumed.restore(str(tmp_path / "ckpt" / "data"))
    _assert_same(_take(resumed, 3), uninterrupted[4:])
    assert [p.name for p in (tmp_path / "ckpt").iterdir()] == ["data.json"]


def test_training_targets_smoothing_and_mixup(digits_config, mesh):
    smooth = _take(data.make_train_iterator(digits_config(pp__label_smoothing=0.1), mesh), 1)
    np.testing.assert_allclose(np.unique(smooth[0]["label"]), [0.01, 0.91], rtol=1e-5)
    mixed = _take(data.make_train_iterator(digits_config(pp__mixup_alpha=1.0), mesh), 1)
    label = mixed[0]["label"]
    np.testing.assert_allclose(label.sum(1), 1, rtol=1e-5)
    assert label.max() >= 0.5 and (label.max(1) < 1).any()  # One weight, larger share kept.


def test_eval_counts_every_example_once(digits_config, mesh):
    evaluator = data.make_eval_iterator(digits_config(batch_eval=64, pp__central_crop=True), mesh)
    assert len(evaluator) == 6  # ceil(360 / 64)
    for _ in range(2):  # Fresh pass each time.
        batches = [jax.tree.map(np.asarray, b) for b in evaluator]
        masks = np.concatenate([b["mask"] for b in batches])
        assert len(batches) == 6 and masks.sum() == 360 and masks[:360].all()
        assert batches[-1]["image"].shape == (64, 32, 32, 3)
        assert (batches[-1]["label"][masks[320:] == 0] == 0).all()  # Padding has no label.


def test_custom_ops_and_conflicting_settings(digits_config, mesh):
    ops = "decode|resize(8)|randaug(1, 5)|value_range(-1, 1)|onehot(10, on=0.9, off=0.0)"
    batch = next(data.make_train_iterator(digits_config(pp__crop=8, pp__train_ops=ops), mesh))
    assert batch["image"].shape == (16, 8, 8, 3) and float(batch["label"].max()) == pytest.approx(
        0.9
    )
    with pytest.raises(data.DataError, match=r"pp\.aug"):
        data.make_train_iterator(digits_config(pp__train_ops=ops, pp__aug="medium1"), mesh)
    with pytest.raises(data.DataError, match=r"expected \[8, 8, 3\]"):
        data.make_train_iterator(digits_config(pp__crop=8, pp__train_ops="decode|onehot(10)"), mesh)
