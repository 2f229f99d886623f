"""Image ops: decoding, crops, resizes, flips and the value range.

Images stay uint8 [H, W, 3] until `value_range` turns them into float32, so geometric ops
and RandAugment all see the same 0..255 pixels whatever order they come in.
"""

from __future__ import annotations

import tensorflow as tf

from vit_jax.data.pp.registry import Features, Op, register, take_seed


def _size2(size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _resize(
    image: tf.Tensor,
    hw: tf.Tensor | tuple[int, int],
    method: str = "bilinear",
    antialias: bool = False,
) -> tf.Tensor:
    """tf.image.resize, but uint8 in -> uint8 out (resize itself always returns floats)."""
    out = tf.image.resize(image, hw, method=method, antialias=antialias)
    if image.dtype == tf.uint8:
        out = tf.cast(tf.clip_by_value(tf.round(out), 0, 255), tf.uint8)
    return out


@register("decode")
def decode(channels: int = 3, key: str = "image") -> Op:
    """Encoded JPEG/PNG/BMP/GIF bytes -> uint8 [H, W, channels]; grayscale becomes RGB."""

    def op(data: Features) -> Features:
        image = tf.io.decode_image(data[key], channels=channels, expand_animations=False)
        return {**data, key: image}

    return op


def _inception_box(shape: tf.Tensor, seed: tf.Tensor, area_min: int, area_max: int):
    """Random box covering area_min..area_max percent of the image, aspect 3/4..4/3."""
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        shape,
        tf.zeros([0, 0, 4], tf.float32),
        seed=seed,
        min_object_covered=0.0,  # No objects to keep: any box with the right area will do.
        aspect_ratio_range=(3 / 4, 4 / 3),
        area_range=(area_min / 100, area_max / 100),
        use_image_if_no_bounding_boxes=True,
    )
    return begin, size


@register("inception_crop")
def inception_crop(size: int, area_min: int = 5, area_max: int = 100, key: str = "image") -> Op:
    """The paper's training crop: random box of 5%..100% of the area, resized to `size`."""

    def op(data: Features) -> Features:
        data, seed = take_seed(data)
        image = data[key]
        begin, box = _inception_box(tf.shape(image), seed, area_min, area_max)
        crop = tf.slice(image, begin, box)  # [h, w, C]; slice forgets the static C.
        crop.set_shape([None, None, image.shape[-1]])
        return {**data, key: _resize(crop, _size2(size))}

    return op


@register("resize")
def resize(
    size: int | tuple[int, int],
    method: str = "bilinear",
    antialias: bool = False,
    key: str = "image",
) -> Op:
    """Resizes to exactly `size` (int: square), ignoring the aspect ratio, like the paper's eval."""

    def op(data: Features) -> Features:
        return {**data, key: _resize(data[key], _size2(size), method, antialias)}

    return op


@register("resize_small")
def resize_small(
    smaller_size: int, method: str = "bilinear", antialias: bool = False, key: str = "image"
) -> Op:
    """Resizes so that the smaller side is `smaller_size`, keeping the aspect ratio."""

    def op(data: Features) -> Features:
        image = data[key]
        hw = tf.cast(tf.shape(image)[:2], tf.float32)
        scale = smaller_size / tf.reduce_min(hw)
        new_hw = tf.cast(tf.round(hw * scale), tf.int32)
        return {**data, key: _resize(image, new_hw, method, antialias)}

    return op


@register("central_crop")
def central_crop(size: int | tuple[int, int], key: str = "image") -> Op:
    """Crops the centre `size` window (the image must be at least that large)."""
    h, w = _size2(size)

    def op(data: Features) -> Features:
        image = data[key]
        top = (tf.shape(image)[0] - h) // 2
        left = (tf.shape(image)[1] - w) // 2
        crop = tf.image.crop_to_bounding_box(image, top, left, h, w)
        return {**data, key: crop}

    return op


@register("random_crop")
def random_crop(size: int | tuple[int, int], key: str = "image") -> Op:
    """A uniformly placed `size` window (the image must be at least that large)."""
    h, w = _size2(size)

    def op(data: Features) -> Features:
        data, seed = take_seed(data)
        image = data[key]
        crop = tf.image.stateless_random_crop(image, [h, w, image.shape[-1]], seed=seed)
        return {**data, key: crop}

    return op


@register("flip_lr")
def flip_lr(key: str = "image") -> Op:
    """Mirrors the image left-right with probability 1/2."""

    def op(data: Features) -> Features:
        data, seed = take_seed(data)
        return {**data, key: tf.image.stateless_random_flip_left_right(data[key], seed)}

    return op


@register("value_range")
def value_range(
    vmin: float = -1.0,
    vmax: float = 1.0,
    in_min: float = 0.0,
    in_max: float = 255.0,
    key: str = "image",
) -> Op:
    """Maps pixel values linearly from [in_min, in_max] to float32 [vmin, vmax]."""

    def op(data: Features) -> Features:
        image = tf.cast(data[key], tf.float32)
        image = (image - in_min) / (in_max - in_min)  # -> [0, 1]
        return {**data, key: vmin + image * (vmax - vmin)}

    return op
