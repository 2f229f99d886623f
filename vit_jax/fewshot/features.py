"""Frozen features for few-shot fits: the model's sharded forward, without its head.

The feature of an image is what the head would see: the pre-logits layer's output
`[B, R]` when the model has one, else the pooled encoder output `[B, D]` (the class token
after the final LayerNorm, or the token mean for 'gap' models).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from vit_jax import sharding
from vit_jax.models import VisionTransformer

FeatureFn = Callable[[Any, dict[str, jax.Array]], tuple[jax.Array, jax.Array, jax.Array]]


def make_feature_fn(model: VisionTransformer, param_shardings: Any, mesh: Mesh) -> FeatureFn:
    """Jitted `(params, batch) -> (features [B, F], labels [B], mask [B])`, replicated.

    Parameters come in their training layout (`param_shardings`, e.g. FSDP shards) and the
    batch split over the data axes, as in the train step; outputs are replicated so every
    process can read them whole.
    """
    headless = model.clone(num_classes=None)  # forward_head stops at the pre-logits.

    def features(params, batch):
        x = headless.apply({"params": params}, batch["image"], train=False)  # [B, F] or [B, N, F]
        if x.ndim == 3:  # Unpooled classifiers: average the tokens.
            x = jnp.mean(x, axis=1)  # [B, F]
        labels = jnp.argmax(batch["label"], axis=-1)  # One-hot [B, K] -> [B].
        return x.astype(jnp.float32), labels, batch["mask"]

    return jax.jit(
        features,
        in_shardings=(param_shardings, sharding.batch_sharding(mesh)),
        out_shardings=sharding.replicated(mesh),
    )


def extract(
    feature_fn: FeatureFn, params: Any, batches: Iterable[dict[str, jax.Array]]
) -> tuple[np.ndarray, np.ndarray]:
    """Features `[n, F]` float32 and labels `[n]` int of one pass, padding dropped."""
    # Every batch is dispatched before any is read back, so the devices never wait on the host.
    outputs = [feature_fn(params, batch) for batch in batches]
    feats, labels = zip(*map(_host, outputs)) if outputs else ((), ())
    if not feats:
        return np.zeros((0, 0), np.float32), np.zeros((0,), np.int64)
    return np.concatenate(feats), np.concatenate(labels)


def _host(out: tuple[jax.Array, jax.Array, jax.Array]) -> tuple[np.ndarray, np.ndarray]:
    feats, labels, mask = jax.device_get(out)
    keep = np.asarray(mask) > 0  # [B]
    return np.asarray(feats)[keep], np.asarray(labels, np.int64)[keep]
