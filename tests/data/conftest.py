"""Fixtures for the input-pipeline tests: offline datasets in temporary TFDS dirs."""

from __future__ import annotations

import io
import os

import jax
import ml_collections
import numpy as np
import pytest
from PIL import Image

from vit_jax import data


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory) -> str:
    """A TFDS data dir with the digits dataset prepared once for the whole session."""
    path = str(tmp_path_factory.mktemp("tfds_digits"))
    cfg = data.default_config()
    cfg.dataset, cfg.tfds_data_dir = "digits", path
    data.get_dataset_info(cfg)  # Prepares digits.
    return path


def _make_config(data_dir: str | None = None, **overrides) -> ml_collections.ConfigDict:
    """The default data config on digits, small batches; `pp__crop=16` sets `pp.crop`."""
    cfg = data.default_config()
    cfg.dataset, cfg.tfds_data_dir = "digits", data_dir
    cfg.batch, cfg.batch_eval, cfg.prefetch = 16, 64, 1
    for key, value in overrides.items():
        node, *rest = key.split("__")
        if rest:
            cfg[node][rest[0]] = value
        else:
            cfg[node] = value
    return cfg


@pytest.fixture
def make_config():
    """`make_config(data_dir, batch=8, pp__crop=16)`: default config, small batches."""
    return _make_config


@pytest.fixture
def digits_config(digits_dir):
    """`digits_config(**overrides)`: a config for the session's prepared digits."""
    return lambda **kw: _make_config(digits_dir, **kw)


@pytest.fixture(scope="session")
def mesh() -> jax.sharding.Mesh:
    """All 8 fake CPU devices (tests/conftest.py) as a 4 x 2 data x fsdp mesh."""
    return jax.make_mesh((4, 2), ("data", "fsdp"))


def _encode(image: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image.squeeze()).save(buf, format=fmt)
    return buf.getvalue()


def _write_image_folder(root: str, per_class: dict[str, dict[str, int]], seed: int = 0) -> str:
    """{split: {class: n}} -> root/split/class/i.{png,jpg}; alternates PNG/JPG and RGB/gray."""
    rng = np.random.default_rng(seed)
    for split, classes in per_class.items():
        for c, n in classes.items():
            os.makedirs(os.path.join(root, split, c), exist_ok=True)
            for i in range(n):
                gray = i % 3 == 2
                shape = (int(rng.integers(20, 40)), int(rng.integers(20, 40))) + (
                    () if gray else (3,)
                )
                image = rng.integers(0, 256, shape, dtype=np.uint8)
                fmt, ext = ("PNG", "png") if i % 2 else ("JPEG", "jpg")
                with open(os.path.join(root, split, c, f"{i}.{ext}"), "wb") as f:
                    f.write(_encode(image, fmt))
    return root


@pytest.fixture
def encode():
    """`encode(uint8 array, 'PNG' | 'JPEG') -> bytes`."""
    return _encode


@pytest.fixture
def image_folder(tmp_path):
    """`image_folder({split: {class: n}}) -> root` of freshly written PNG/JPG files."""
    return lambda per_class, seed=0: _write_image_folder(str(tmp_path / "images"), per_class, seed)
