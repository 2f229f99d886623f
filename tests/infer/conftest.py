"""Tiny checkpoints on disk, image files of every kind, and a local HTTP server."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator

import numpy as np
import pytest
from PIL import Image

from tests.models import tiny
from vit_jax import checkpoint

NUM_CLASSES = 10


def write_checkpoint(directory, kind: str, num_classes: int | None = NUM_CLASSES) -> str:
    """A tiny model of `tests.models.tiny` with random parameters saved as `.npz`."""
    model, size = tiny.build(kind, num_classes=num_classes)
    path = str(directory / f"{kind}-{num_classes}.npz")
    checkpoint.save(tiny.random_params(model, size), path)
    return path


@pytest.fixture(scope="session")
def ckpt_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("checkpoints")


@pytest.fixture(scope="session")
def token_ckpt(ckpt_dir) -> str:
    return write_checkpoint(ckpt_dir, "token")  # 16x16 input, 4x4 grid, class token.


@pytest.fixture(scope="session")
def gap_ckpt(ckpt_dir) -> str:
    return write_checkpoint(ckpt_dir, "gap")


@pytest.fixture(scope="session")
def hybrid_ckpt(ckpt_dir) -> str:
    return write_checkpoint(ckpt_dir, "hybrid_root")  # 32x32 input, 8x8 patches of 64 channels.


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory):
    """`rgb.png` (48x40 noise), `gray.png`, `rgba.png`, `gray16.png`, `photo.jpg`."""
    directory = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(40, 48, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(directory / "rgb.png")
    Image.fromarray(rgb[..., 0]).save(directory / "gray.png")
    Image.fromarray(np.dstack([rgb, np.full((40, 48), 255, np.uint8)])).save(directory / "rgba.png")
    gray16 = (np.linspace(0, 65535, 40 * 48).reshape(40, 48)).astype(np.uint16)
    Image.fromarray(gray16).save(directory / "gray16.png")
    Image.fromarray(rgb).resize((600, 500)).save(directory / "photo.jpg", quality=90)
    return directory


@pytest.fixture(scope="session")
def http_root(tmp_path_factory) -> Iterator[tuple[str, object]]:
    """(base URL, folder): files written to the folder are served on 127.0.0.1."""
    directory = tmp_path_factory.mktemp("served")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", directory
    server.shutdown()
    server.server_close()
