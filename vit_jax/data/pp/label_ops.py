"""Label ops: one-hot / k-hot targets (with label smoothing through `on`/`off`) and `keep`."""

from __future__ import annotations

import tensorflow as tf

from vit_jax.data.pp.registry import RNG_KEY, Features, Op, register


@register("onehot")
def onehot(
    depth: int, key: str = "label", key_result: str | None = None, on: float = 1.0, off: float = 0.0
) -> Op:
    """Integer label(s) -> float32 [depth] target.

    A scalar label gives a one-hot vector; a vector of labels (several per image, as in
    JFT-style multi-label data) gives a k-hot vector. Every entry is `on` where a label is
    present and `off` elsewhere, which is how label smoothing is expressed.
    """

    def op(data: Features) -> Features:
        labels = tf.convert_to_tensor(data[key])
        hot = tf.one_hot(labels, depth, dtype=tf.float32)  # [depth] or [k, depth]
        if labels.shape.rank == 1:
            hot = tf.reduce_max(hot, axis=0)  # k-hot [depth]; an empty list gives zeros.
        elif labels.shape.rank != 0:
            raise ValueError(f"onehot expects a scalar or a vector of labels, got {labels.shape}.")
        return {**data, key_result or key: off + hot * (on - off)}

    return op


@register("keep")
def keep(*keys: str) -> Op:
    """Drops every entry except `keys` (and the `_rng` seed that later random ops need)."""

    def op(data: Features) -> Features:
        return {k: v for k, v in data.items() if k in keys or k == RNG_KEY}

    return op
