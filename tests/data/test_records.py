"""JFT-style sharded ArrayRecord sources: random access, k-hot labels, many files, conversion."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from vit_jax import data
from vit_jax.data import records

NUM_CLASSES, NUM_TRAIN, NUM_TEST = 6, 48, 10


def _examples(n: int, seed: int = 0) -> list[tuple[bytes, list[int]]]:
    """Tiny PNGs whose pixel value is the example index, with 1-3 labels each."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        buf = io.BytesIO()
        Image.fromarray(np.full((6, 6, 3), i % 256, np.uint8)).save(buf, format="PNG")
        labels = rng.choice(NUM_CLASSES, size=1 + i % 3, replace=False)
        out.append((buf.getvalue(), sorted(labels.tolist())))
    return out


@pytest.fixture(scope="module")
def record_dir(tmp_path_factory) -> str:
    """8 train shards and 2 test shards."""
    directory = str(tmp_path_factory.mktemp("jft_like"))
    counts = {
        "train": records.write_split(directory, "train", _examples(NUM_TRAIN), 8),
        "test": records.write_split(directory, "test", _examples(NUM_TEST), 2),
    }
    records.write_info(directory, NUM_CLASSES, counts, multi_label=True)
    return directory


def _ids(source, split: str) -> list[int]:
    split_records = source.records(split)
    raw = [split_records[i] for i in range(len(split_records))]
    images = source.parse(tf.constant(raw))["image"]
    return [int(tf.io.decode_png(image)[0, 0, 0]) for image in images]


def test_random_access_over_all_shards_in_order(record_dir):
    source = records.ShardedSource.open(f"arrayrecord:{record_dir}")
    assert _ids(source, "train") == list(range(NUM_TRAIN))
    assert _ids(source, "test") == list(range(NUM_TEST))
    with pytest.raises(data.DataError, match="no slices"):
        source.records("train[:10%]")


def test_iterators_give_khot_targets(record_dir, make_config, mesh):
    cfg = make_config(
        None, dataset=f"arrayrecord:{record_dir}", pp__crop=8, pp__multi_label=True, batch_eval=8
    )
    cfg.batch = 8
    info = data.get_dataset_info(cfg)
    assert (info.num_classes, info.num_train_examples, info.num_eval_examples) == (6, 48, 10)
    label = np.asarray(next(data.make_train_iterator(cfg, mesh))["label"])
    assert set(label.sum(1).tolist()) <= {1.0, 2.0, 3.0} and label.shape == (8, 6)
    masks = [np.asarray(b["mask"]).sum() for b in data.make_eval_iterator(cfg, mesh)]
    assert sum(masks) == NUM_TEST
    cfg.pp.multi_label = False
    with pytest.raises(data.DataError, match="multi_label"):
        data.get_dataset_info(cfg)


def test_thousands_of_files(tmp_path, make_config, mesh):
    """2,000 shards of one or two records: every example once per epoch, resumable."""
    directory = str(tmp_path / "many")
    n = records.write_split(directory, "train", _examples(3000), 2000)
    records.write_info(directory, NUM_CLASSES, {"train": n}, multi_label=True)
    cfg = make_config(None, dataset=f"arrayrecord:{directory}", pp__crop=6, pp__multi_label=True)
    cfg.batch, cfg.pp.train_ops = 200, "decode|resize(6)|value_range(0, 255)|onehot(6)"
    iterator = data.make_train_iterator(cfg, mesh)
    pixels = [np.asarray(next(iterator)["image"])[:, 0, 0, 0] for _ in range(15)]  # 1 epoch
    counts = np.bincount(np.concatenate(pixels).astype(int), minlength=256)
    np.testing.assert_array_equal(counts, np.bincount(np.arange(3000) % 256, minlength=256))


def test_tfrecord_directories_are_refused_with_how_to_convert(tmp_path, make_config, mesh):
    source_dir = str(tmp_path / "old")
    tf.io.gfile.makedirs(source_dir)
    examples = _examples(12)
    for shard in range(2):
        with tf.io.TFRecordWriter(f"{source_dir}/train-{shard:05d}-of-00002.tfrecord") as w:
            for image, labels in examples[shard * 6 : shard * 6 + 6]:
                w.write(records.serialize(image, labels))
    records.write_info(source_dir, NUM_CLASSES, {"train": 12}, multi_label=True)
    cfg = make_config(None, dataset=f"tfrecord:{source_dir}", pp__multi_label=True)
    with pytest.raises(data.DataError, match=r"python -m vit_jax.data.records convert"):
        data.get_dataset_info(cfg)

    target = str(tmp_path / "new")
    assert records.main(["convert", source_dir, target]) == 0
    source = records.ShardedSource.open(f"arrayrecord:{target}")
    assert _ids(source, "train") == list(range(12))


def test_resume_across_epochs(record_dir, make_config, mesh, tmp_path):
    cfg = make_config(None, dataset=f"arrayrecord:{record_dir}", pp__crop=8, pp__multi_label=True)
    cfg.batch = 8  # 6 batches per epoch: the run crosses epochs.
    take = lambda it, n: [np.asarray(next(it)["image"]) for _ in range(n)]
    expected = take(data.make_train_iterator(cfg, mesh), 14)
    first = data.make_train_iterator(cfg, mesh)
    take(first, 9)
    first.save(str(tmp_path / "it"))
    resumed = data.make_train_iterator(cfg, mesh)
    resumed.restore(str(tmp_path / "it"))
    for want, got in zip(expected[9:], take(resumed, 5), strict=True):
        np.testing.assert_array_equal(want, got)
