"""Every registered pp op, eagerly and inside tf.data, plus the op-string parser."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from vit_jax.data import DataError, UnknownNameError
from vit_jax.data.pp import RNG_KEY, parse, registry

RNG = np.random.default_rng(0)
IMAGE = RNG.integers(0, 256, (20, 30, 3), dtype=np.uint8)

# One spec per registered op: those that crop or resize IMAGE, with the shape they must give,
RESHAPING = {
    "inception_crop(8)": (8, 8, 3),
    "resize((10, 12))": (10, 12, 3),
    "resize_small(10)": (10, 15, 3),
    "central_crop(10)": (10, 10, 3),
    "random_crop(10)": (10, 10, 3),
}
# and those that keep its shape (`decode` reads IMAGE encoded as PNG).
SHAPE_KEEPING = [
    "decode",
    "flip_lr",
    "value_range(-1, 1)",
    "randaug(2, 10)",
    "onehot(10)",
    "keep('image')",
]
SPECS = [*RESHAPING, *SHAPE_KEEPING]


def _example(image=IMAGE) -> dict:
    return {
        "image": tf.constant(image),
        "label": tf.constant(3, tf.int64),
        RNG_KEY: tf.constant([1, 2], tf.int64),
    }


def test_every_registered_op_has_a_case():
    assert sorted(spec.split("(")[0] for spec in SPECS) == sorted(registry._OPS)


@pytest.mark.parametrize("spec", SPECS)
def test_op_eager_and_in_tf_data_agree(spec, encode):
    image = encode(IMAGE, "PNG") if spec == "decode" else IMAGE
    op = parse(spec)
    eager = op(_example(image))
    ds = tf.data.Dataset.from_tensors(_example(image)).map(op)
    (graph,) = list(ds.as_numpy_iterator())
    assert tuple(eager["image"].shape) == RESHAPING.get(spec, IMAGE.shape)
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
    out = parse("keep('image')")(_example())
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
