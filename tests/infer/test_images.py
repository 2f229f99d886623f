"""load_image: every image mode ends up RGB in [-1, 1] at the requested size; bad files say so."""

from __future__ import annotations

import shutil
import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from vit_jax.inference import ImageError, images, load_image, prepare_image


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares `width x height` RGB pixels but holds no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def test_rgb_at_native_size_is_exact(image_dir):
    pixels = np.asarray(Image.open(image_dir / "rgb.png"), np.float32)
    loaded = load_image(image_dir / "rgb.png", (40, 48))
    assert loaded.dtype == np.float32 and loaded.shape == (40, 48, 3)
    np.testing.assert_allclose(loaded, pixels / 127.5 - 1.0, atol=1e-6)


@pytest.mark.parametrize("name", ["rgb.png", "gray.png", "rgba.png", "gray16.png", "photo.jpg"])
def test_every_mode_becomes_rgb_in_range(image_dir, name):
    loaded = load_image(str(image_dir / name), (16, 12))
    assert loaded.shape == (16, 12, 3) and loaded.dtype == np.float32
    assert loaded.min() >= -1.0 and loaded.max() <= 1.0


def test_grayscale_is_replicated(image_dir):
    gray = np.asarray(Image.open(image_dir / "gray.png"), np.float32) / 127.5 - 1.0
    loaded = load_image(image_dir / "gray.png", (40, 48))
    for channel in range(3):
        np.testing.assert_allclose(loaded[..., channel], gray, atol=1e-6)


def test_16_bit_grayscale_keeps_its_full_range(image_dir):
    # A ramp over 0..65535: truncating to 8 bits would saturate almost everything at 1.
    loaded = load_image(image_dir / "gray16.png", (40, 48))[..., 0]
    assert loaded.min() < -0.99 and loaded.max() > 0.99
    assert abs(float(loaded.mean())) < 0.05


def test_transparent_pixels_become_white(tmp_path):
    clear = np.zeros((8, 8, 4), np.uint8)  # Black, fully transparent.
    Image.fromarray(clear).save(tmp_path / "clear.png")
    np.testing.assert_allclose(load_image(tmp_path / "clear.png", 8), 1.0)


def test_uint8_arrays_and_pil_images(image_dir):
    pixels = np.asarray(Image.open(image_dir / "rgb.png"))
    from_array = prepare_image(pixels, (40, 48))
    from_pil = load_image(Image.open(image_dir / "rgb.png"), (40, 48))
    np.testing.assert_allclose(from_array, from_pil)
    with pytest.raises(ImageError, match="uint8"):
        prepare_image(pixels.astype(np.float32), 8)


def test_url_matches_local_file(image_dir, http_root):
    base, served = http_root
    shutil.copy(image_dir / "rgb.png", served / "rgb.png")
    np.testing.assert_array_equal(
        load_image(f"{base}/rgb.png", 16), load_image(image_dir / "rgb.png", 16)
    )
    with pytest.raises(ImageError, match=r"missing\.png.*HTTP 404"):
        load_image(f"{base}/missing.png", 16)


def _bad_files(tmp_path, image_dir):
    png = (image_dir / "rgb.png").read_bytes()
    jpeg = (image_dir / "photo.jpg").read_bytes()
    cases = {
        "notes.txt": (b"just some text\n", "not an image file"),
        "empty.png": (b"", "not an image file"),
        "cut.png": (png[: len(png) // 2], "corrupt or truncated"),
        "cut.jpg": (jpeg[: len(jpeg) // 2], "corrupt or truncated"),
        "huge.png": (_png_header(20000, 20000), "too large"),
    }
    for name, (data, _) in cases.items():
        (tmp_path / name).write_bytes(data)
    return {name: message for name, (_, message) in cases.items()}


def test_bad_files_name_the_file(tmp_path, image_dir):
    for name, message in _bad_files(tmp_path, image_dir).items():
        with pytest.raises(ImageError, match=message) as info:
            load_image(tmp_path / name, 16)
        assert str(tmp_path / name) in str(info.value), name
    with pytest.raises(ImageError, match="does not exist"):
        load_image(tmp_path / "absent.png", 16)
    with pytest.raises(ImageError, match="is a directory"):
        load_image(tmp_path, 16)


def test_own_pixel_limit(image_dir, monkeypatch):
    monkeypatch.setattr(images, "MAX_PIXELS", 100)
    with pytest.raises(ImageError, match=r"48x40 = 1,920 pixels, over the limit of 100"):
        load_image(image_dir / "rgb.png", 16)


@pytest.fixture(scope="module")
def photo_dataset(tmp_path_factory):
    """An image folder whose test split is one 500x375 photo-like JPEG."""
    root = tmp_path_factory.mktemp("folder")
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:375, 0:500]
    photo = np.stack([x * 0.4, y * 0.6, (x + y) * 0.2], -1) + rng.normal(0, 20, (375, 500, 3))
    photo = np.clip(photo, 0, 255).astype(np.uint8)
    for split, cls in (("train", "a"), ("train", "b"), ("test", "a")):
        (root / split / cls).mkdir(parents=True, exist_ok=True)
        Image.fromarray(photo).save(root / split / cls / "photo.jpg", quality=90)
    return str(root), str(tmp_path_factory.mktemp("tfds"))


@pytest.mark.parametrize("crop", [224, 640])  # Down-scale and up-scale.
def test_predictor_input_equals_the_evaluation_input(photo_dataset, crop):
    import jax

    from vit_jax import data

    root, tfds_dir = photo_dataset
    cfg = data.default_config()
    cfg.update(dataset=root, tfds_data_dir=tfds_dir, batch=8, batch_eval=8)
    cfg.pp.crop = crop
    mesh = jax.make_mesh((8,), ("data",))
    batch = next(iter(data.make_eval_iterator(cfg, mesh, ("data",))))
    evaluated = np.asarray(batch["image"])[0]  # [crop, crop, 3]
    path = f"{root}/test/a/photo.jpg"
    np.testing.assert_allclose(load_image(path, crop), evaluated, atol=1e-6)
    # Already decoded pixels (uint8 arrays, PIL images) take the same resize.
    pixels = tf.io.decode_jpeg(open(path, "rb").read()).numpy()  # As evaluation decodes.
    np.testing.assert_allclose(prepare_image(pixels, crop), evaluated, atol=1e-6)


def test_exif_orientation_is_applied(tmp_path):
    stored = np.zeros((20, 40), np.uint8)
    stored[:, 20:] = 255  # Left half black, right half white, as stored.
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: display rotated 90 degrees clockwise.
    Image.fromarray(stored).save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    shown = load_image(tmp_path / "rotated.jpg", (40, 20))[..., 0]  # [H, W] as displayed.
    assert shown[:16].mean() < -0.9 and shown[24:].mean() > 0.9  # Black on top.
