"""RandAugment's ops: eager vs tf.data, against PIL where PIL has the same op, geometry."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageEnhance, ImageOps

from vit_jax.data.pp import randaug

RNG = np.random.default_rng(0)
# Smooth-ish content (a gradient plus noise) so that enhance ops have something to act on.
IMAGE = np.clip(np.linspace(0, 200, 24)[None, :, None] + RNG.integers(0, 50, (24, 24, 3)), 0, 255)
IMAGE = IMAGE.astype(np.uint8)
PLUS = tf.constant(1.0)


@pytest.mark.parametrize("name", sorted(randaug.RANDAUG_OPS))
def test_op_eager_and_in_tf_data(name):
    fn = randaug.RANDAUG_OPS[name]
    eager = fn(tf.constant(IMAGE), 7.0, PLUS).numpy()
    ds = tf.data.Dataset.from_tensors(IMAGE).map(lambda im: fn(im, 7.0, PLUS))
    (graph,) = list(ds.as_numpy_iterator())
    assert eager.dtype == np.uint8 and eager.shape == IMAGE.shape
    np.testing.assert_array_equal(eager, graph)


PIL_EQUIVALENTS = {
    "autocontrast": lambda im, level: ImageOps.autocontrast(im),
    "equalize": lambda im, level: ImageOps.equalize(im),
    "solarize": lambda im, level: ImageOps.solarize(im, 256 - int(level / 10 * 256)),
    "posterize": lambda im, level: ImageOps.posterize(im, 8 - int(level / 10 * 4)),
    "color": lambda im, level: ImageEnhance.Color(im).enhance(level / 10 * 1.8 + 0.1),
    "contrast": lambda im, level: ImageEnhance.Contrast(im).enhance(level / 10 * 1.8 + 0.1),
    "brightness": lambda im, level: ImageEnhance.Brightness(im).enhance(level / 10 * 1.8 + 0.1),
    "sharpness": lambda im, level: ImageEnhance.Sharpness(im).enhance(level / 10 * 1.8 + 0.1),
}


@pytest.mark.parametrize("name", sorted(PIL_EQUIVALENTS))
def test_matches_pil(name):
    level = 5.0
    ours = randaug.RANDAUG_OPS[name](tf.constant(IMAGE), level, PLUS).numpy().astype(int)
    pil = np.asarray(PIL_EQUIVALENTS[name](Image.fromarray(IMAGE), level)).astype(int)
    # Grayscale weights and rounding differ slightly between PIL and tf.image.
    assert np.abs(ours - pil).max() <= 2, name


@pytest.mark.parametrize("name", ["rotate", "shear_x", "shear_y", "translate_x", "translate_y"])
def test_geometry_is_identity_at_level_zero(name):
    out = randaug.RANDAUG_OPS[name](tf.constant(IMAGE), 0.0, PLUS).numpy()
    np.testing.assert_array_equal(out, IMAGE)


def test_rotate_quarter_turn():
    out = randaug.rotate(tf.constant(IMAGE), 30.0, PLUS).numpy()  # 30 * 3 degrees = 90.
    assert any(np.array_equal(out, np.rot90(IMAGE, k)) for k in (1, -1))


def test_translate_shifts_and_fills_grey():
    level = 10 / 0.45 / 24  # Exactly one pixel on a 24-pixel-wide image.
    out = randaug.translate_x(tf.constant(IMAGE), level, PLUS).numpy()
    np.testing.assert_array_equal(out[:, 1:], IMAGE[:, :-1])
    assert (out[:, 0] == 128).all()


def test_solarize_and_posterize_grow_with_magnitude():
    assert np.array_equal(randaug.solarize(tf.constant(IMAGE), 0.0, PLUS), IMAGE)
    assert np.array_equal(randaug.solarize(tf.constant(IMAGE), 10.0, PLUS), 255 - IMAGE)
    assert np.array_equal(randaug.posterize(tf.constant(IMAGE), 0.0, PLUS), IMAGE)
    assert (randaug.posterize(tf.constant(IMAGE), 30.0, PLUS).numpy() % 128 == 0).all()


def test_apply_randaug_is_seeded():
    def run(seed: int) -> np.ndarray:
        return randaug.apply_randaug(
            tf.constant(IMAGE), tf.constant([seed, 0], tf.int64), 2, 15.0
        ).numpy()

    np.testing.assert_array_equal(run(1), run(1))
    assert len({run(s).tobytes() for s in range(8)}) > 4
