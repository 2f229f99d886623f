"""Tiny model configs and randomised parameters shared by the model tests."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from vit_jax import models

TRANSFORMER = {
    "num_layers": 2,
    "mlp_dim": 64,
    "num_heads": 2,
    "dropout_rate": 0.0,
    "attention_dropout_rate": 0.0,
}


def tiny_config(classifier="token", representation_size=None, resnet=None, patch=4):
    return {
        "patches": {"size": (patch, patch)},
        "hidden_size": 32,
        "transformer": dict(TRANSFORMER),
        "resnet": resnet,
        "representation_size": representation_size,
        "classifier": classifier,
    }


TINY_CONFIGS = {
    "token": (tiny_config(), 16),
    "gap": (tiny_config(classifier="gap"), 16),
    "pre_logits": (tiny_config(representation_size=24), 16),
    # Root-only stem (stride 4) then 2x2 patches, and a two-stage stem with 1x1 patches.
    "hybrid_root": (tiny_config(resnet={"num_layers": (), "width_factor": 1}, patch=2), 32),
    "hybrid": (tiny_config(resnet={"num_layers": (1, 1), "width_factor": 1}, patch=1), 32),
}


def random_params(model, image_size, seed=0):
    """`model`'s parameters with every leaf random (float32 numpy), without running its init.

    Initialisation zeroes the head and the last GroupNorm of each unit; random values make
    every parameter matter in a comparison. Scales and biases of norms stay near 1 and 0; other
    weights have variance 1 / fan-in. benchmarks/timm_parity.py uses it for published sizes.
    """
    images = jax.ShapeDtypeStruct((1, image_size, image_size, 3), jnp.float32)
    shapes = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), images)["params"]
    rng = np.random.default_rng(seed)

    def randomise(path, leaf):
        name = jax.tree_util.keystr(path)
        noise = rng.normal(size=leaf.shape).astype(np.float32)
        if "scale" in name:
            return 1.0 + 0.1 * noise
        if "'bias'" in name:
            return 0.1 * noise
        fan_in = int(np.prod(leaf.shape[:-1])) if leaf.ndim > 1 else 1
        return noise / np.sqrt(max(fan_in, 1)).astype(np.float32)

    return jax.tree_util.tree_map_with_path(randomise, shapes)


def random_images(image_size, batch=2, seed=1):
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, size=(batch, image_size, image_size, 3)).astype(np.float32)


def build(name, num_classes=5, **overrides):
    config, image_size = TINY_CONFIGS[name]
    return models.build_model({**config, **overrides}, num_classes=num_classes), image_size
