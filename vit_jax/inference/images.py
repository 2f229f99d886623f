"""Loading images for the model: any PIL-readable file or URL -> `[H, W, 3]` float32 in [-1, 1].

Pixels go through the evaluation pipeline's own preprocessing
(`vit_jax.models.preprocessing`: the same TensorFlow decode, bilinear resize and value range),
so a served prediction sees exactly the input that the reported test accuracy saw. PIL reads
the header first (format, size, EXIF), so oversized files (over `MAX_PIXELS`) are refused
before anything is decoded. Images the evaluation decoder reads as they are (8-bit RGB or
grayscale JPEG, PNG, GIF, BMP) take its path from the bytes; the others are decoded by PIL
first and then take the same resize: EXIF-rotated photos are turned upright, transparent
pixels become white, CMYK, palette and other modes become RGB, and 16-bit grayscale keeps its
full range.
"""

from __future__ import annotations

import functools
import io
import os
import warnings
from collections.abc import Sequence

import numpy as np
import tensorflow as tf
from PIL import Image, ImageOps, UnidentifiedImageError

from vit_jax.checkpoint.fs import is_url
from vit_jax.inference.errors import ImageError
from vit_jax.inference.sources import read_bytes
from vit_jax.models.preprocessing import EvalPreprocessing

MAX_PIXELS = 200_000_000  # Refused beyond this (PIL's own decompression-bomb limit is lower).
MAX_DOWNLOAD_BYTES = 256 * 2**20  # URLs only: a local file is read whole, as the user chose it.
_SAME_AS_EVAL_FORMATS = ("JPEG", "PNG", "GIF", "BMP")  # tf.io.decode_image reads these.
_EXIF_ORIENTATION = 0x0112
_HIGH_DEPTH_SCALE = {"F": 1.0}  # Single-channel float images are taken to be in [0, 1].

Size = int | Sequence[int]


def _hw(size: Size) -> tuple[int, int]:
    if isinstance(size, int | np.integer):
        return int(size), int(size)
    height, width = (int(s) for s in size)
    return height, width


def load_image(source: str | os.PathLike | Image.Image, size: Size) -> np.ndarray:
    """The image at `source` (path or http(s) URL) as `[H, W, 3]` float32 in [-1, 1].

    `size` is the model's resolution, `int` or `(height, width)`. Raises `ImageError` (naming
    the file) for missing, unreadable, corrupt or oversized images.
    """
    if isinstance(source, Image.Image):
        return prepare_image(source, size)
    name = os.fspath(source)
    target = _hw(size)
    with warnings.catch_warnings():
        # Sizes are checked below; PIL's warning for images over ~89 MP is noise here.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            max_bytes = MAX_DOWNLOAD_BYTES if is_url(name) else None
            data = read_bytes(name, max_bytes, "Image", ImageError)
            with Image.open(io.BytesIO(data)) as image:
                _check_pixels(image, name)
                if _decoded_as_in_evaluation(image):
                    return _from_encoded(data, target, name)
                image = ImageOps.exif_transpose(image)  # A rotated or plain decoded copy.
                return prepare_image(image, target, name=name)
        except ImageError:  # From read_bytes (missing, unreadable) or the checks below.
            raise
        except UnidentifiedImageError:
            raise ImageError(
                f"Image {name} is not an image file PIL can read (JPEG, PNG, GIF, BMP, TIFF, "
                "WebP, ...). Check that it is an image and not, say, an HTML page."
            ) from None
        except Image.DecompressionBombError as e:
            raise ImageError(_too_large(name, str(e))) from None
        except (OSError, SyntaxError, ValueError, EOFError) as e:
            raise ImageError(
                f"Image {name} is corrupt or truncated ({e}). Re-download or re-export it."
            ) from None


def _too_large(name: str, detail: str) -> str:
    return (
        f"Image {name} is too large to decode safely ({detail}). Downscale it to a few "
        "thousand pixels a side first; the model sees it at a few hundred pixels anyway."
    )


def _check_pixels(image: Image.Image, name: str) -> None:
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise ImageError(
            _too_large(
                name,
                f"{width}x{height} = {width * height:,} pixels, over the limit of {MAX_PIXELS:,}",
            )
        )


def prepare_image(image: Image.Image | np.ndarray, size: Size, name: str = "image") -> np.ndarray:
    """A decoded image (PIL, or uint8 array `[H, W]`/`[H, W, 1|3|4]`) -> `[h, w, 3]` in [-1, 1]."""
    if isinstance(image, np.ndarray):
        image = _from_array(image, name)
    height, width = _hw(size)
    if image.mode in _HIGH_DEPTH_SCALE or image.mode.startswith("I"):
        # 16/32-bit integer or float grayscale: resize in float, never truncate to 8 bits
        # (the evaluation decoder reads 8 bits only).
        scale = _HIGH_DEPTH_SCALE.get(image.mode, 65535.0)
        gray = image.convert("F").resize((width, height), Image.Resampling.BILINEAR)
        gray = np.clip(np.asarray(gray, np.float32) / scale, 0.0, 1.0)  # [h, w]
        pixels = np.repeat(gray[..., None], 3, axis=-1) * 2.0 - 1.0  # [h, w, 3]
        return pixels.astype(np.float32)
    pixels = np.asarray(_to_rgb(image), np.uint8)  # [H, W, 3]
    return _evaluation_ops((height, width), encoded=False)(pixels).numpy()


def _decoded_as_in_evaluation(image: Image.Image) -> bool:
    """True when the evaluation decoder gives the same RGB pixels as PIL would."""
    orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
    return (
        image.format in _SAME_AS_EVAL_FORMATS
        and image.mode in ("RGB", "L")
        and "transparency" not in image.info
        and orientation == 1
    )


def _from_encoded(data: bytes, size: tuple[int, int], name: str) -> np.ndarray:
    try:
        return _evaluation_ops(size, encoded=True)(tf.constant(data)).numpy()
    except tf.errors.OpError as e:
        detail = (e.message or str(e)).strip().splitlines()[-1]
        raise ImageError(
            f"Image {name} is corrupt or truncated ({detail}). Re-download or re-export it."
        ) from None


@functools.lru_cache(maxsize=16)
def _evaluation_ops(size: tuple[int, int], encoded: bool):
    """The evaluation preprocessing at `size`, from encoded bytes or from uint8 RGB pixels."""
    from vit_jax.data import pp  # TensorFlow, imported on first use.

    definition = EvalPreprocessing(size)
    op = pp.parse(definition.ops() if encoded else definition.image_ops())
    spec = tf.TensorSpec([], tf.string) if encoded else tf.TensorSpec([None, None, 3], tf.uint8)
    return tf.function(lambda x: op({"image": x})["image"], input_signature=[spec])


def _to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB; transparent pixels become white, as an image viewer shows them."""
    has_alpha = any(band in ("A", "a") for band in image.getbands())
    if not has_alpha and "transparency" not in image.info:
        return image if image.mode == "RGB" else image.convert("RGB")
    rgba = image.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def _from_array(array: np.ndarray, name: str) -> Image.Image:
    if array.dtype != np.uint8 or not (
        array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (1, 3, 4))
    ):
        raise ImageError(
            f"{name}: expected a uint8 array [H, W] or [H, W, 1|3|4]; got {array.dtype} "
            f"{array.shape}. Pass model-ready float arrays in [-1, 1] directly to predict()."
        )
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    return Image.fromarray(array)


def to_display(image: np.ndarray) -> np.ndarray:
    """A model input in [-1, 1] -> RGB in [0, 1] for `imshow`."""
    return np.clip((np.asarray(image, np.float32) + 1.0) / 2.0, 0.0, 1.0)
