"""Tiny checkpoints (as published-layout .npz files) and our logits on fixed images; shared by
the convert and export tests through their conftest files."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np
import pytest

from tests.models import tiny
from vit_jax import checkpoint


@dataclasses.dataclass(frozen=True)
class Tiny:
    """A tiny model saved as .npz, with its parameters, images and our logits on them."""

    name: str
    npz: str
    params: dict[str, Any]  # numpy arrays, the model's tree
    images: np.ndarray  # [B, H, W, 3] in [-1, 1]
    logits: np.ndarray  # [B, C] from our model


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory):
    """`tiny_checkpoints(name)` -> `Tiny`, built once per session (names of tests.models.tiny)."""
    directory = tmp_path_factory.mktemp("tiny_npz")
    cache: dict[str, Tiny] = {}

    def get(name: str) -> Tiny:
        if name not in cache:
            model, image_size = tiny.build(name, num_classes=5)
            params = jax.tree.map(np.asarray, tiny.random_params(model, image_size))
            images = tiny.random_images(image_size)
            logits = np.asarray(jax.jit(model.apply)({"params": params}, images))
            path = str(directory / f"{name}.npz")
            checkpoint.save(params, path)
            cache[name] = Tiny(name, path, params, images, logits)
        return cache[name]

    return get
