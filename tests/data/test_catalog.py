"""Dataset names: presets, fast failures for unprepared/unknown datasets, mocked TFDS."""

from __future__ import annotations

import os
import time
import types

import numpy as np
import pytest
import tensorflow_datasets as tfds
from tensorflow_datasets.core.file_adapters import FileFormat

from vit_jax import data
from vit_jax.data.config import resolve_augmentation
from vit_jax.data.presets import AUGREG_RECIPES, DATASET_PRESETS


def test_unprepared_dataset_fails_fast_with_instructions(make_config, tmp_path):
    empty = str(tmp_path / "empty_tfds")
    start = time.monotonic()
    with pytest.raises(data.DatasetNotPreparedError) as err:
        data.get_dataset_info(make_config(empty, dataset="cifar10"))
    assert time.monotonic() - start < 10
    msg = str(err.value)
    assert "'cifar10'" in msg and empty in msg and "tfds build cifar10" in msg
    assert not os.path.exists(os.path.join(empty, "downloads"))  # Nothing was fetched.


def test_a_local_folder_does_not_shadow_a_preset(make_config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.makedirs("cifar10/train/a")
    with pytest.raises(data.DatasetNotPreparedError):
        data.get_dataset_info(make_config(str(tmp_path / "tfds"), dataset="cifar10"))


def test_manual_and_uncatalogued_datasets_say_so(make_config, tmp_path):
    cfg = make_config(str(tmp_path), dataset="imagenet2012", tfds_manual_dir="/my/manual")
    with pytest.raises(data.DatasetNotPreparedError, match="/my/manual"):
        data.get_dataset_info(cfg)
    with pytest.raises(data.DatasetNotPreparedError, match="not in the public TFDS catalogue"):
        data.get_dataset_info(make_config(str(tmp_path), dataset="imagenet21k"))


def test_unknown_name_lists_close_matches_only(make_config, tmp_path):
    with pytest.raises(data.UnknownNameError) as err:
        data.get_dataset_info(make_config(str(tmp_path), dataset="cifar1O"))
    msg = str(err.value)
    assert "cifar10" in msg and "cifar100" in msg and len(msg) < 300


@pytest.mark.parametrize("name", sorted(set(DATASET_PRESETS) - {"imagenet21k"}))
def test_preset_class_counts_match_tfds_features(name, tmp_path):
    import vit_jax.data.digits  # noqa: F401  (registers 'digits')

    preset = DATASET_PRESETS[name]
    builder = tfds.builder(preset.tfds_name, data_dir=str(tmp_path))  # Code only, no data.
    assert builder.info.features["label"].num_classes == preset.num_classes


def test_augreg_recipes_and_mixup_override(make_config):
    assert set(AUGREG_RECIPES) >= {"none", "light1", "medium1", "medium2", "strong1", "strong2"}
    cfg = make_config(pp__aug="medium2")
    assert resolve_augmentation(cfg.pp) == (aug := resolve_augmentation(cfg.pp))
    assert (aug.randaug, aug.mixup_alpha) == ((2, 15), 0.5)
    cfg.pp.mixup_alpha = 0.1
    assert resolve_augmentation(cfg.pp).mixup_alpha == 0.1
    cfg.pp.aug = "strong9"
    with pytest.raises(data.DataError, match="light1"):
        resolve_augmentation(cfg.pp)


@pytest.fixture
def cifar10_metadata(tmp_path) -> str:
    """TFDS metadata (no data files) for cifar10 prepared as ArrayRecord."""
    builder = tfds.builder("cifar10", data_dir=str(tmp_path))
    splits = [
        tfds.core.SplitInfo(name=n, shard_lengths=[c], num_bytes=0, filename_template=None)
        for n, c in [("train", 50_000), ("test", 10_000)]
    ]
    builder.info.set_splits(tfds.core.SplitDict(splits))
    builder.info.set_file_format(FileFormat.ARRAY_RECORD, override=True)
    os.makedirs(builder.data_dir)
    builder.info.write_to_directory(builder.data_dir)
    return str(tmp_path)


class _FakeRecords:
    """Serialized cifar10-shaped examples (random pixels, label = index % 10) by index."""

    def __init__(self, features, num_examples: int):
        self._features, self._n = features, num_examples

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int) -> bytes:
        rng = np.random.default_rng(i)
        example = {
            "id": f"train_{i}",
            "image": rng.integers(0, 256, (32, 32, 3), dtype=np.uint8),
            "label": i % 10,
        }
        return self._features.serialize_example(example)  # TFDS's own serializer.


def test_cifar10_preset_reads_array_record_data_sources(cifar10_metadata, make_config, mesh):
    def as_data_source(builder, split, **kwargs):
        n = builder.info.splits[split].num_examples
        return types.SimpleNamespace(data_source=_FakeRecords(builder.info.features, n))

    cfg = make_config(cifar10_metadata, dataset="cifar10", pp__crop=24, pp__aug="light2")
    with tfds.testing.mock_data(as_data_source_fn=as_data_source, data_dir=cifar10_metadata):
        info = data.get_dataset_info(cfg)
        batch = next(data.make_train_iterator(cfg, mesh))
    assert (info.num_classes, info.num_train_examples, info.num_eval_examples) == (
        10,
        49_000,
        10_000,
    )
    assert batch["image"].shape == (16, 24, 24, 3) and batch["label"].shape == (16, 10)


def test_datasets_prepared_as_tfrecord_say_how_to_convert(tmp_path, make_config):
    builder = tfds.builder("cifar10", data_dir=str(tmp_path))
    builder.info.set_splits(
        tfds.core.SplitDict(
            [
                tfds.core.SplitInfo(
                    name="train", shard_lengths=[5], num_bytes=0, filename_template=None
                )
            ]
        )
    )
    builder.info.set_file_format(FileFormat.TFRECORD, override=True)
    os.makedirs(builder.data_dir)
    builder.info.write_to_directory(builder.data_dir)
    with pytest.raises(data.DatasetNotPreparedError, match="tfds convert_format") as err:
        data.get_dataset_info(make_config(str(tmp_path), dataset="cifar10"))
    assert "--out_file_format=array_record" in str(err.value)
