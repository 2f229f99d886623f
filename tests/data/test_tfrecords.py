"""JFT-style sharded TFRecords: disjoint files per host, seeded file shuffle, k-hot labels."""

from __future__ import annotations

import numpy as np
import pytest

from vit_jax import data
from vit_jax.data import tfrecords

NUM_CLASSES, NUM_TRAIN, NUM_TEST = 6, 48, 10


@pytest.fixture(scope="module")
def record_dir(tmp_path_factory) -> str:
    """8 train shards and 2 test shards of tiny PNGs with 1-3 labels each."""
    import io

    from PIL import Image

    directory = str(tmp_path_factory.mktemp("jft_like"))
    rng = np.random.default_rng(0)

    def examples(n: int):
        for i in range(n):
            buf = io.BytesIO()
            pixels = np.full((6, 6, 3), i, np.uint8)  # Pixel value = example index.
            Image.fromarray(pixels).save(buf, format="PNG")
            labels = rng.choice(NUM_CLASSES, size=1 + i % 3, replace=False)
            yield buf.getvalue(), sorted(labels.tolist())

    counts = {
        "train": tfrecords.write_split(directory, "train", examples(NUM_TRAIN), 8),
        "test": tfrecords.write_split(directory, "test", examples(NUM_TEST), 2),
    }
    tfrecords.write_info(directory, NUM_CLASSES, counts, multi_label=True)
    return directory


def _ids(ds) -> list[int]:
    import tensorflow as tf

    return [int(tf.io.decode_png(ex["image"])[0, 0, 0]) for ex in ds]


def test_hosts_read_disjoint_files_that_cover_the_split(record_dir):
    source = tfrecords.TfrecordSource.open(record_dir)
    per_host = [_ids(source.read("train", h, 4, train=True, seed=0)) for h in range(4)]
    assert sorted(i for ids in per_host for i in ids) == list(range(NUM_TRAIN))
    with pytest.raises(data.DataError, match="at least as many shards as hosts"):
        source.read("train", 0, 9, train=True, seed=0)


def test_file_order_is_shuffled_by_seed(record_dir):
    source = tfrecords.TfrecordSource.open(record_dir)
    order = lambda seed: _ids(source.read("train", 0, 1, train=True, seed=seed))
    assert order(1) == order(1) and sorted(order(1)) == list(range(NUM_TRAIN))
    assert order(1) != order(2)


def test_eval_shards_by_example_with_exact_counts(record_dir):
    source = tfrecords.TfrecordSource.open(record_dir)
    shards = [_ids(source.read("test", h, 3, train=False, seed=0)) for h in range(3)]
    assert [len(s) for s in shards] == [source.num_examples("test", h, 3) for h in range(3)]
    assert sorted(i for ids in shards for i in ids) == list(range(NUM_TEST))


def test_iterators_give_khot_targets(record_dir, make_config, mesh):
    cfg = make_config(
        None,
        dataset=f"tfrecord:{record_dir}",
        pp__crop=8,
        pp__multi_label=True,
        batch=8,
        batch_eval=8,
    )
    info = data.get_dataset_info(cfg)
    assert (info.num_classes, info.num_train_examples, info.num_eval_examples) == (6, 48, 10)
    label = np.asarray(next(data.make_train_iterator(cfg, mesh))["label"])
    assert set(label.sum(1).tolist()) <= {1.0, 2.0, 3.0} and label.shape == (8, 6)
    masks = [np.asarray(b["mask"]).sum() for b in data.make_eval_iterator(cfg, mesh)]
    assert sum(masks) == NUM_TEST
    cfg.pp.multi_label = False
    with pytest.raises(data.DataError, match="multi_label"):
        data.get_dataset_info(cfg)


def test_resume_across_interleaved_files(record_dir, make_config, mesh, tmp_path):
    cfg = make_config(None, dataset=f"tfrecord:{record_dir}", pp__crop=8, pp__multi_label=True)
    cfg.batch, cfg.shuffle_buffer = 8, 16  # 6 batches per epoch: the run crosses epochs.
    take = lambda it, n: [np.asarray(next(it)["image"]) for _ in range(n)]
    expected = take(data.make_train_iterator(cfg, mesh), 14)
    first = data.make_train_iterator(cfg, mesh)
    take(first, 9)
    first.save(str(tmp_path / "it"))
    resumed = data.make_train_iterator(cfg, mesh)
    resumed.restore(str(tmp_path / "it"))
    for want, got in zip(expected[9:], take(resumed, 5), strict=True):
        np.testing.assert_array_equal(want, got)
