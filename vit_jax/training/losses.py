"""Per-example losses on logits `[B, C]` and (soft) labels `[B, C]`, chosen by `config.loss`.

Computed in float32 whatever the compute dtype of the model.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from vit_jax.errors import ConfigError

LossFn = Callable[[jax.Array, jax.Array], jax.Array]


def softmax_xent(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Cross-entropy of the softmax, `[B, C], [B, C] -> [B]` (fine-tuning, one label each)."""
    return optax.softmax_cross_entropy(logits.astype(jnp.float32), labels)


def sigmoid_xent(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Independent binary cross-entropies summed over classes, `-> [B]` (pre-training)."""
    return jnp.sum(optax.sigmoid_binary_cross_entropy(logits.astype(jnp.float32), labels), -1)


LOSSES: dict[str, LossFn] = {
    "softmax_xent": softmax_xent,
    "sigmoid_xent": sigmoid_xent,
}


def get_loss(name: str) -> LossFn:
    if name not in LOSSES:
        raise ConfigError(f"Unknown loss {name!r}; config.loss takes one of {sorted(LOSSES)}.")
    return LOSSES[name]
