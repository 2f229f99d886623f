"""Every registered pp op, eagerly and inside tf.data, plus the op-string parser."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from vit_jax.data import DataError, UnknownNameError
from vit_jax.data.pp import RNG_KEY, parse, registered_ops

RNG = np.random.default_rng(0)
IMAGE = RNG.integers(0, 256, (20, 30, 3), dtype=np.uint8)

# One spec per registered op, with the input it needs and the output shape it must give.
CASES = {
    "decode": ("decode", "png", (20, 30, 3)),
    "decode_jpeg_and_inception_crop": ("decode_jpeg_and_inception_crop(8)", "jpeg", (8, 8, 3)),
    "inception_crop": ("inception_crop(8)", "raw", (8, 8, 3)),
    "resize": ("resize((10, 12))", "raw", (10, 12, 3)),
    "resize_small": ("resize_small(10)", "raw", (10, 15, 3)),
    "central_crop": ("central_crop(10)", "raw", (10, 10, 3)),
    "random_crop": ("random_crop(10)", "raw", (10, 10, 3)),
    "flip_lr": ("flip_lr", "raw", (20, 30, 3)),
    "value_range": ("value_range(-1, 1)", "raw", (20, 30, 3)),
    "randaug": ("randaug(2, 10)", "raw", (20, 30, 3)),
    "onehot": ("onehot(10)", "raw", (20, 30, 3)),
    "keep": ("keep('image')", "raw", (20, 30, 3)),
}


def _example(kind: str, encode=None) -> dict:
    image = IMAGE if kind == "raw" else encode(IMAGE, kind.upper())
    return {
        "image": tf.constant(image),
        "label": tf.constant(3, tf.int64),
        RNG_KEY: tf.constant([1, 2], tf.int64),
    }


def test_every_registered_op_has_a_case():
    assert sorted(CASES) == registered_ops()


@pytest.mark.parametrize("name", sorted(CASES))
def test_op_eager_and_in_tf_data_agree(name, encode):
    spec, kind, shape = CASES[name]
    op = parse(spec)
    eager = op(_example(kind, encode))
    ds = tf.data.Dataset.from_tensors(_example(kind, encode)).map(op)
    (graph,) = list(ds.as_numpy_iterator())
    assert tuple(eager["image"].shape) == shape
    for key in eager:
        np.testing.assert_allclose(np.asarray(eager[key]), graph[key], atol=1e-6)


def test_decode_makes_grayscale_rgb(encode):
    gray = RNG.integers(0, 256, (5, 6), dtype=np.uint8)
    out = parse("decode")({"image": tf.constant(encode(gray, "PNG"))})["image"]
    assert out.shape == (5, 6, 3) and out.dtype == tf.uint8
    np.testing.assert_array_equal(out[..., 0], gray)
    np.testing.assert_array_equal(out[..., 2], gray)


def test_value_range_maps_extremes():
    image = tf.constant([[[0, 255, 51]]], tf.uint8)
    out = parse("value_range(-1, 1)")({"image": image})["image"]
    np.testing.assert_allclose(out.numpy().ravel(), [-1, 1, -0.6], atol=1e-6)


def test_inception_crop_area_and_randomness():
    image = tf.constant(
        np.arange(100 * 100 * 3, dtype=np.int32).reshape(100, 100, 3) % 256, tf.uint8
    )
    outs = [
        parse("inception_crop(16)")({"image": image, RNG_KEY: tf.constant([s, 0], tf.int64)})
        for s in range(4)
    ]
    assert all(o["image"].shape == (16, 16, 3) for o in outs)
    assert len({o["image"].numpy().tobytes() for o in outs}) > 1  # Different seeds, crops.
    again = parse("inception_crop(16)")({"image": image, RNG_KEY: tf.constant([0, 0], tf.int64)})
    np.testing.assert_array_equal(again["image"], outs[0]["image"])  # Same seed, same crop.


def test_fused_jpeg_crop_matches_decode_then_crop(encode):
    jpeg = encode(IMAGE, "JPEG")
    ex = {"image": tf.constant(jpeg), RNG_KEY: tf.constant([5, 6], tf.int64)}
    fused = parse("decode_jpeg_and_inception_crop(8)")(ex)["image"]
    plain = parse("decode|inception_crop(8)")(ex)["image"]
    # Same box; only JPEG's crop-aware decoding may differ by a little.
    assert np.abs(fused.numpy().astype(int) - plain.numpy().astype(int)).mean() < 8


def test_flip_lr_flips_about_half():
    flips = [
        parse("flip_lr")({"image": tf.constant(IMAGE), RNG_KEY: tf.constant([s, 1], tf.int64)})
        for s in range(40)
    ]
    flipped = sum(np.array_equal(f["image"], IMAGE[:, ::-1]) for f in flips)
    assert 8 < flipped < 32


def test_onehot_scalar_kvector_and_smoothing():
    assert parse("onehot(4)")({"label": tf.constant(2)})["label"].numpy().tolist() == [0, 0, 1, 0]
    khot = parse("onehot(4)")({"label": tf.constant([0, 3])})["label"].numpy().tolist()
    assert khot == [1, 0, 0, 1]
    smooth = parse("onehot(4, on=0.9, off=0.1, key_result='y')")({"label": tf.constant(1)})
    np.testing.assert_allclose(smooth["y"], [0.1, 0.9, 0.1, 0.1], atol=1e-6)


def test_keep_drops_other_keys_but_not_the_seed():
    out = parse("keep('image')")(_example("raw"))
    assert set(out) == {"image", RNG_KEY}


def test_parser_errors():
    with pytest.raises(UnknownNameError, match="Did you mean: flip_lr"):
        parse("decode|flip_rl")
    with pytest.raises(DataError, match="literals"):
        parse("resize(size)")
    with pytest.raises(DataError, match="Bad arguments"):
        parse("resize(1, 2, 3, 4, 5)")
    with pytest.raises(DataError, match="needs the '_rng'"):
        parse("flip_lr")({"image": tf.constant(IMAGE)})
