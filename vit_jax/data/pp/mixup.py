"""Mixup (Zhang et al., 2018) as a batch op with its own deterministic randomness.

One mixing weight per batch, mixing each example with its neighbour (the batch rolled by
one), as in big_vision. It runs inside tf.data after batching, seeded from the batch's
position, so it is reproducible and is restored with the iterator.
"""

from __future__ import annotations

import tensorflow as tf

from vit_jax.data.pp.registry import Features


def sample_beta(seed: tf.Tensor, alpha: float) -> tf.Tensor:
    """One draw from Beta(alpha, alpha), from two stateless Gamma(alpha) draws."""
    g = tf.random.stateless_gamma([2], seed=seed, alpha=alpha)
    return g[0] / (g[0] + g[1])


def mixup(batch: Features, seed: tf.Tensor, alpha: float) -> Features:
    """Mixes `image` [B, H, W, C] and `label` [B, N] with weight lam ~ Beta(alpha, alpha)."""
    lam = sample_beta(seed, alpha)
    # Keep the bigger share on the original example, so the (mixed) label's argmax still
    # mostly names the example itself; it does not change the distribution of mixes.
    lam = tf.maximum(lam, 1.0 - lam)
    out = dict(batch)
    for key in ("image", "label"):
        x = tf.cast(batch[key], tf.float32)
        out[key] = lam * x + (1.0 - lam) * tf.roll(x, shift=1, axis=0)
    return out
