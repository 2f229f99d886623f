"""Image-folder datasets: preparation, subsplits, mixed formats, unreadable files."""

from __future__ import annotations

import os

import numpy as np
import pytest

from vit_jax import data
from vit_jax.data.image_folder import ImageFolder

TREE = {"train": {"cat": 10, "ant": 10, "dog": 10}, "test": {"cat": 4, "ant": 3, "dog": 3}}


def test_folder_becomes_a_dataset(image_folder, make_config, tmp_path, mesh):
    root = image_folder(TREE)
    cfg = make_config(str(tmp_path / "tfds"), dataset=root, pp__crop=16, batch_eval=8)
    info = data.get_dataset_info(cfg)
    assert info.label_names == ["ant", "cat", "dog"]  # Sorted train/ subfolders.
    assert (info.num_classes, info.num_train_examples, info.num_eval_examples) == (3, 30, 10)
    labels, total = [], 0.0
    for batch in data.make_eval_iterator(cfg, mesh):  # PNG, JPEG, RGB and grayscale mixed.
        assert batch["image"].shape == (8, 16, 16, 3)
        mask = np.asarray(batch["mask"])
        labels += np.asarray(batch["label"]).argmax(1)[mask > 0].tolist()
        total += mask.sum()
    assert total == 10 and sorted(labels) == [0] * 3 + [1] * 4 + [2] * 3


def test_subsplits(image_folder, make_config, tmp_path):
    root = image_folder(TREE)
    cfg = make_config(
        str(tmp_path / "tfds"), dataset=root, pp__train="train[:50%]", pp__test="train[50%:]"
    )
    info = data.get_dataset_info(cfg)
    assert (info.num_train_examples, info.num_eval_examples) == (15, 15)


def test_without_test_folder_holds_out_ten_percent(image_folder, make_config, tmp_path):
    root = image_folder({"train": {"a": 10, "b": 10}})
    info = data.get_dataset_info(make_config(str(tmp_path / "tfds"), dataset=root))
    assert (info.num_train_examples, info.num_eval_examples) == (18, 2)


def test_unreadable_files_are_named(image_folder, make_config, tmp_path):
    root = image_folder(TREE)
    bad = os.path.join(root, "train", "dog", "broken.jpg")
    with open(bad, "wb") as f:
        f.write(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    with open(os.path.join(root, "test", "cat", "0.jpg"), "r+b") as f:
        f.truncate(60)  # A cut-off download.
    cfg = make_config(str(tmp_path / "tfds"), dataset=root)
    with pytest.raises(data.DataError, match="2 unreadable") as err:
        data.get_dataset_info(cfg)
    assert "train/dog/broken.jpg" in str(err.value) and "test/cat/0.jpg" in str(err.value)


def test_test_classes_must_exist_in_train(image_folder, make_config, tmp_path):
    root = image_folder({"train": {"a": 2}, "test": {"a": 1, "zebra": 1}})
    with pytest.raises(data.DataError, match="zebra"):
        data.get_dataset_info(make_config(str(tmp_path / "tfds"), dataset=root))


def test_changed_folder_gets_a_fresh_cache(image_folder, tmp_path):
    root = image_folder({"train": {"a": 2, "b": 2}})
    before = ImageFolder(root, data_dir=str(tmp_path)).data_path
    assert ImageFolder(root, data_dir=str(tmp_path)).data_path == before
    os.remove(os.path.join(root, "train", "a", "0.jpg"))
    assert ImageFolder(root, data_dir=str(tmp_path)).data_path != before
