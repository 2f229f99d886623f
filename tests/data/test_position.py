"""The data position: a few hundred bytes, a global per-epoch shuffle, refused when stale."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from vit_jax import data
from vit_jax.data import order, records


def _order(num_examples: int, seed: int, epochs: int) -> np.ndarray:
    positions = tf.range(num_examples * epochs, dtype=tf.int64)
    indices = order.example_indices(positions, num_examples, seed).numpy()
    return indices.reshape(epochs, num_examples)


def test_every_example_once_per_epoch_global_shuffle_new_each_epoch_and_seed():
    n = 1000
    epochs = _order(n, seed=0, epochs=3)
    for epoch in epochs:
        np.testing.assert_array_equal(np.sort(epoch), np.arange(n))
    assert not np.array_equal(epochs[0], epochs[1]) and not np.array_equal(epochs[1], epochs[2])
    assert not np.array_equal(_order(n, seed=1, epochs=1)[0], epochs[0])
    # Global, not windowed: the first 5% of an epoch comes from all over the dataset, and
    # where an example lands is unrelated to where it is stored.
    assert epochs[0][:50].min() < 100 and epochs[0][:50].max() > 900
    ranks = np.argsort(epochs[0])  # Position of each example in the epoch.
    assert abs(np.corrcoef(ranks, np.arange(n))[0, 1]) < 0.1
    np.testing.assert_array_equal(_order(n, seed=0, epochs=3), epochs)  # Deterministic.


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory) -> str:
    """500 noise JPEGs of 200x150 (about 25 KB each, incompressible), two classes."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for split, n in (("train", 500), ("test", 4)):
        for i in range(n):
            folder = root / split / "ab"[i % 2]
            folder.mkdir(parents=True, exist_ok=True)
            pixels = rng.integers(0, 256, (150, 200, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.jpg", quality=90)
    return str(root)


def test_position_stays_a_few_hundred_bytes(photo_folder, make_config, mesh, tmp_path):
    cfg = make_config(str(tmp_path / "tfds"), dataset=photo_folder, pp__crop=16)
    cfg.batch = 8
    images_bytes = sum(
        os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(photo_folder) for f in fs
    )
    assert images_bytes > 10 * 2**20  # The old design buffered encoded images: MBs.
    iterator = data.make_train_iterator(cfg, mesh)
    for _ in range(3):
        next(iterator)
    iterator.save(str(tmp_path / "ckpt" / "data"))
    saved = tmp_path / "ckpt" / "data.json"
    assert saved.stat().st_size < 1024  # Under 1 KiB, whatever the buffer or image size.
    assert json.loads(saved.read_text())["next_batch"] == 3


def test_resume_with_other_data_settings_is_refused(digits_config, mesh, tmp_path):
    path = str(tmp_path / "data")
    iterator = data.make_train_iterator(digits_config(), mesh)
    next(iterator)
    iterator.save(path)
    written = (tmp_path / "data.json").read_bytes()
    for overrides, change in [
        ({"batch": 32}, "batch: 16 -> 32"),
        ({"seed": 3}, "seed: 0 -> 3"),
        ({"pp__train": "train[:50%]"}, "train_split: 'train' -> 'train[:50%]'"),
    ]:
        other = data.make_train_iterator(digits_config(**overrides), mesh)
        with pytest.raises(data.DataError, match="differ from those of the saved run") as err:
            other.restore(path)
        assert change in str(err.value)
    assert (tmp_path / "data.json").read_bytes() == written  # Nothing written is lost.


def test_position_of_an_earlier_version_is_refused_clearly(digits_config, mesh, tmp_path):
    (tmp_path / "data-process0.index").write_bytes(b"tf.data iterator state")
    iterator = data.make_train_iterator(digits_config(), mesh)
    with pytest.raises(data.DataError, match="earlier vit_jax"):
        iterator.restore(str(tmp_path / "data"))


def test_an_unreadable_example_is_named(tmp_path, make_config, mesh):
    good = io.BytesIO()
    Image.fromarray(np.zeros((6, 6, 3), np.uint8)).save(good, format="PNG")
    examples = [(good.getvalue(), [0])] * 16
    examples[5] = (b"<html>not an image</html>", [0])
    n = records.write_split(str(tmp_path), "train", examples, 2)
    records.write_info(str(tmp_path), 2, {"train": n}, multi_label=False)
    cfg = make_config(None, dataset=f"arrayrecord:{tmp_path}", pp__crop=8)
    cfg.batch = 16  # One batch holds the whole epoch, so it meets the bad example.
    with pytest.raises(data.DataError, match=r"example 5 of .* split 'train' is unreadable"):
        next(data.make_train_iterator(cfg, mesh))
