"""RandAugment (Cubuk et al., 2020) on uint8 [H, W, 3] images, as one pp op: `randaug(2, 15)`.

Each of `num_layers` layers applies one op chosen uniformly from `RANDAUG_OPS` at strength
`magnitude`, on AutoAugment's level scale where 10 is the reference strength (AugReg uses
0..20; e.g. rotate is 30 degrees at 10, 60 at 20). Geometric ops pick a random direction.

Two deliberate departures from the TF reference implementation that AugReg used: there,
solarize and posterize get *weaker* as the magnitude grows (magnitude 0 inverts every pixel
or blacks out the image); here they get stronger, with posterize keeping at least 1 bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import tensorflow as tf

from vit_jax.data.pp.registry import Features, Op, register, take_seed

_FILL = 128.0  # Grey for the pixels that geometric ops uncover.


def _to_uint8(x: tf.Tensor) -> tf.Tensor:
    return tf.cast(tf.clip_by_value(tf.round(x), 0.0, 255.0), tf.uint8)


def _blend(base: tf.Tensor, image: tf.Tensor, factor: float) -> tf.Tensor:
    """factor 0 -> base, 1 -> image, > 1 extrapolates away from base (PIL ImageEnhance)."""
    base = tf.cast(base, tf.float32)
    return _to_uint8(base + factor * (tf.cast(image, tf.float32) - base))


def _enhance_factor(level: float) -> float:
    return level / 10 * 1.8 + 0.1


def _transform(image: tf.Tensor, matrix: list) -> tf.Tensor:
    """Samples output pixel (x, y) from input (a0 x + a1 y + a2, b0 x + b1 y + b2)."""
    transform = tf.cast(tf.stack([*matrix, 0.0, 0.0])[None], tf.float32)  # [1, 8]
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None],
        transforms=transform,
        output_shape=tf.shape(image)[:2],
        fill_value=_FILL,
        interpolation="NEAREST",
        fill_mode="CONSTANT",
    )
    return out[0]


def identity(image: tf.Tensor, level: float, sign: tf.Tensor) -> tf.Tensor:
    return image


def autocontrast(image: tf.Tensor, level: float, sign: tf.Tensor) -> tf.Tensor:
    """Stretches each channel so its darkest pixel is 0 and its brightest 255."""
    x = tf.cast(image, tf.float32)
    lo = tf.reduce_min(x, axis=[0, 1])  # [C]
    hi = tf.reduce_max(x, axis=[0, 1])
    flat = hi <= lo  # A constant channel stays as it is.
    scale = tf.where(flat, 1.0, 255.0 / tf.maximum(hi - lo, 1.0))
    return _to_uint8((x - tf.where(flat, 0.0, lo)) * scale)


def _equalize_channel(channel: tf.Tensor) -> tf.Tensor:
    """PIL's ImageOps.equalize for one uint8 [H, W] channel."""
    values = tf.cast(channel, tf.int32)
    hist = tf.histogram_fixed_width(values, [0, 255], nbins=256)
    last = tf.gather(hist, tf.reduce_max(tf.where(hist > 0)))  # Count of the top value.
    step = (tf.reduce_sum(hist) - last) // 255
    safe_step = tf.maximum(step, 1)
    lut = (tf.cumsum(hist) + safe_step // 2) // safe_step
    lut = tf.clip_by_value(tf.concat([[0], lut[:-1]], 0), 0, 255)
    return tf.where(step == 0, channel, tf.cast(tf.gather(lut, values), tf.uint8))


def equalize(image: tf.Tensor, level: float, sign: tf.Tensor) -> tf.Tensor:
    return tf.stack([_equalize_channel(image[..., c]) for c in range(3)], axis=-1)


def rotate(image: tf.Tensor, level: float, sign: tf.Tensor) -> tf.Tensor:
    angle = sign * math.radians(level / 10 * 30)
    h, w = tf.unstack(tf.cast(tf.shape(image)[:2], tf.float32))
    cy, cx = (h - 1) / 2, (w - 1) / 2
    cos, sin = tf.cos(angle), tf.sin(angle)
    return _transform(
        image, [cos, -sin, cx - cos * cx + sin * cy, sin, cos, cy - sin * cx - cos * cy]
    )


def shear_x(image: tf.Tensor, level: float, sign: tf.Tensor) -> tf.Tensor:
    s = sign * level / 10 * 0.3
    return _transform(image, [1.0, s, 0.0, 0.0, 1.0, 0.0])


def shear_y(image: tf.Tensor, level: float, sign: tf.Tensor) -> tf.Tensor:
    s = sign * level / 10 * 0.3
    return _transform(image, [1.0, 0.0, 0.0, s, 1.0, 0.0])


def translate_x(image: tf.Tensor, level: float, sign: tf.Tensor) -> tf.Tensor:
    # 0.45 of the width at level 10: AutoAugment's 100 px on 224 px images.
    dx = sign * level / 10 * 0.45 * tf.cast(tf.shape(image)[1], tf.float32)
    return _transform(image, [1.0, 0.0, -dx, 0.0, 1.0, 0.0])


def translate_y(image: tf.Tensor, level: float, sign: tf.Tensor) -> tf.Tensor:
    dy = sign * level / 10 * 0.45 * tf.cast(tf.shape(image)[0], tf.float32)
    return _transform(image, [1.0, 0.0, 0.0, 0.0, 1.0, -dy])


def solarize(image: tf.Tensor, level: float, sign: tf.Tensor) -> tf.Tensor:
    """Inverts the pixels at or above a threshold that drops from 256 (none) to 0 (all)."""
    threshold = max(0, 256 - int(level / 10 * 256))
    x = tf.cast(image, tf.int32)
    return tf.cast(tf.where(x < threshold, x, 255 - x), tf.uint8)


def posterize(image: tf.Tensor, level: float, sign: tf.Tensor) -> tf.Tensor:
    """Keeps the top `bits` bits of each value: 8 (unchanged) at level 0, 4 at level 10."""
    shift = 8 - min(8, max(1, 8 - int(level / 10 * 4)))
    return tf.bitwise.left_shift(tf.bitwise.right_shift(image, shift), shift)


def color(image: tf.Tensor, level: float, sign: tf.Tensor) -> tf.Tensor:
    gray = tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(image))
    return _blend(gray, image, _enhance_factor(level))


def contrast(image: tf.Tensor, level: float, sign: tf.Tensor) -> tf.Tensor:
    mean = tf.reduce_mean(tf.cast(tf.image.rgb_to_grayscale(image), tf.float32))
    return _blend(tf.fill(tf.shape(image), mean), image, _enhance_factor(level))


def brightness(image: tf.Tensor, level: float, sign: tf.Tensor) -> tf.Tensor:
    return _blend(tf.zeros_like(image), image, _enhance_factor(level))


def sharpness(image: tf.Tensor, level: float, sign: tf.Tensor) -> tf.Tensor:
    """Blends with PIL's SMOOTH-filtered image; the 1-pixel border is left unfiltered."""
    kernel = tf.constant([[1, 1, 1], [1, 5, 1], [1, 1, 1]], tf.float32) / 13
    kernel = tf.tile(kernel[:, :, None, None], [1, 1, 3, 1])  # [3, 3, C, 1]
    x = tf.cast(image, tf.float32)[None]
    smooth = tf.nn.depthwise_conv2d(x, kernel, [1, 1, 1, 1], "VALID")[0]  # [H-2, W-2, C]
    smooth = tf.pad(_to_uint8(smooth), [[1, 1], [1, 1], [0, 0]])
    interior = tf.pad(tf.ones_like(smooth[1:-1, 1:-1], tf.bool), [[1, 1], [1, 1], [0, 0]])
    return _blend(tf.where(interior, smooth, image), image, _enhance_factor(level))


RandaugFn = Callable[[tf.Tensor, float, tf.Tensor], tf.Tensor]
RANDAUG_OPS: dict[str, RandaugFn] = {
    "identity": identity,
    "autocontrast": autocontrast,
    "equalize": equalize,
    "rotate": rotate,
    "solarize": solarize,
    "color": color,
    "posterize": posterize,
    "contrast": contrast,
    "brightness": brightness,
    "sharpness": sharpness,
    "shear_x": shear_x,
    "shear_y": shear_y,
    "translate_x": translate_x,
    "translate_y": translate_y,
}


def apply_randaug(
    image: tf.Tensor, seed: tf.Tensor, num_layers: int, magnitude: float
) -> tf.Tensor:
    """Applies `num_layers` randomly chosen ops to a uint8 [H, W, 3] image."""
    fns = list(RANDAUG_OPS.values())
    for layer_seed in tf.unstack(tf.random.experimental.stateless_split(seed, num_layers)):
        op_seed, sign_seed = tf.unstack(tf.random.experimental.stateless_split(layer_seed, 2))
        index = tf.random.stateless_uniform([], op_seed, 0, len(fns), dtype=tf.int32)
        sign = tf.where(tf.random.stateless_uniform([], sign_seed) < 0.5, -1.0, 1.0)
        branches = [lambda fn=fn, im=image, s=sign: fn(im, magnitude, s) for fn in fns]
        image = tf.switch_case(index, branches)
    return image


@register("randaug")
def randaug(num_layers: int = 2, magnitude: float = 10, key: str = "image") -> Op:
    def op(data: Features) -> Features:
        data, seed = take_seed(data)
        image = apply_randaug(data[key], seed, num_layers, float(magnitude))
        image.set_shape(data[key].shape)
        return {**data, key: image}

    return op
