"""Tiny ViT and hybrid configs, and random parameters as numpy trees, for the checkpoint tests."""

from __future__ import annotations

import copy
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from vit_jax.checkpoint import layout
from vit_jax.models import build_model

TINY_VIT: dict[str, Any] = {
    "model_name": None,
    "patches": {"size": (8, 8)},
    "hidden_size": 32,
    "transformer": {
        "num_layers": 2,
        "mlp_dim": 64,
        "num_heads": 2,
        "dropout_rate": 0.0,
        "attention_dropout_rate": 0.0,
    },
    "resnet": None,
    "representation_size": None,
    "classifier": "token",
}
# Stem stride 8 with two stages; GroupNorm needs channels divisible by 32 (stage widths 64, 128).
TINY_HYBRID: dict[str, Any] = {
    **TINY_VIT,
    "patches": {"size": (1, 1)},
    "resnet": {"num_layers": (1, 1), "width_factor": 1},
}


def tiny_config(base: dict[str, Any] = TINY_VIT, **overrides: Any) -> dict[str, Any]:
    config = copy.deepcopy(base)
    for field, value in overrides.items():
        if isinstance(value, dict) and isinstance(config.get(field), dict):
            config[field].update(value)
        else:
            config[field] = value
    return config


def init_params(
    config: dict[str, Any], num_classes: int | None = 10, image_size=(32, 32), seed: int = 0
) -> dict[str, Any]:
    """Random (not zero) parameters as numpy arrays, so that round trips test real values."""
    model = build_model(config, num_classes=num_classes)
    shapes = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, *image_size, 3)))["params"]
    )
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: rng.normal(size=s.shape).astype(np.float32), shapes)


def assert_trees_identical(found: Any, expected: Any) -> None:
    """Same keys, dtypes, shapes and bytes."""
    found, expected = layout.flatten(found), layout.flatten(expected)
    assert found.keys() == expected.keys()
    for key, value in expected.items():
        assert found[key].dtype == value.dtype, key
        assert found[key].shape == value.shape, key
        assert found[key].tobytes() == value.tobytes(), key
