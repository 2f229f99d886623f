"""Loading images for the model: any PIL-readable file or URL -> `[H, W, 3]` float32 in [-1, 1].

The image is converted to RGB (grayscale replicated, alpha composited onto white, 16-bit
grayscale scaled from its full range) and resized to the model's resolution without cropping,
as the evaluation pipeline does. Large JPEGs are decoded at a reduced scale (PIL's `draft`)
and other formats are shrunk with `reduce` before the bilinear resize, so memory stays bounded
by the file's own size; images over `MAX_PIXELS` are refused.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from vit_jax.inference.errors import ImageError
from vit_jax.inference.sources import is_url, read_bytes

MAX_PIXELS = 200_000_000  # Refused beyond this (PIL's own decompression-bomb limit is lower).
MAX_DOWNLOAD_BYTES = 256 * 2**20
REDUCING_GAP = 3.0  # Shrink by whole factors first while the result stays >= 3x the target.
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
    if is_url(name):
        f = io.BytesIO(read_bytes(name, MAX_DOWNLOAD_BYTES, "Image", ImageError))
    else:
        f = name
    with warnings.catch_warnings():
        # Sizes are checked below; PIL's warning for images over ~89 MP is noise here.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(f) as image:
                _check_pixels(image, name)
                # JPEG only: decode at 1/2, 1/4 or 1/8 scale while staying >= the target size
                # (the larger side on both axes, in case EXIF rotation swaps them).
                side = max(target)
                image.draft(None, (side, side))
                image = ImageOps.exif_transpose(image)  # A rotated or plain decoded copy.
                return prepare_image(image, target, name=name)
        except ImageError:
            raise
        except FileNotFoundError:
            raise ImageError(f"Image {name} does not exist. Check the path.") from None
        except IsADirectoryError:
            raise ImageError(f"Image {name} is a directory, not an image file.") from None
        except PermissionError:
            raise ImageError(f"Image {name} cannot be read: permission denied.") from None
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
        # 16/32-bit integer or float grayscale: resize in float, never truncate to 8 bits.
        scale = _HIGH_DEPTH_SCALE.get(image.mode, 65535.0)
        gray = image.convert("F").resize((width, height), Image.Resampling.BILINEAR)
        gray = np.clip(np.asarray(gray, np.float32) / scale, 0.0, 1.0)  # [h, w]
        pixels = np.repeat(gray[..., None], 3, axis=-1) * 2.0 - 1.0  # [h, w, 3]
        return pixels.astype(np.float32)
    rgb = _to_rgb(image)
    rgb = rgb.resize((width, height), Image.Resampling.BILINEAR, reducing_gap=REDUCING_GAP)
    pixels = np.asarray(rgb, np.float32)  # [h, w, 3] in 0..255
    return pixels / 127.5 - 1.0


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
