"""Multi-head self-attention that keeps the published parameter layout.

The parameters are exactly those of the published checkpoints (and of Flax's
`nn.MultiHeadDotProductAttention`): `query`/`key`/`value` kernels `[D, heads, head_dim]`
with biases `[heads, head_dim]`, and an `out` kernel `[heads, head_dim, D]` with bias `[D]`.
The attention itself runs through `jax.nn.dot_product_attention`, which dispatches to fused
kernels (cuDNN flash attention) on GPU. When the caller asks for intermediates, or attention
dropout is active, the weights are computed explicitly instead, with the same math.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any


def explicit_attention(
    query: jax.Array, key: jax.Array, value: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Softmax attention that also returns the weights.

    Shapes: q, k, v [B, N, H, K] -> attended [B, N, H, K], weights [B, H, N, N].
    """
    depth = query.shape[-1]
    logits = jnp.einsum("bqhk,bshk->bhqs", query, key) / jnp.sqrt(depth).astype(query.dtype)
    # Softmax in float32 even for bfloat16 compute, as the fused kernels do.
    weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(query.dtype)
    return jnp.einsum("bhqs,bshk->bqhk", weights, value), weights


class SelfAttention(nn.Module):
    """Self-attention over a token sequence, `[B, N, D] -> [B, N, D]`."""

    num_heads: int
    dtype: Dtype = jnp.float32
    dropout_rate: float = 0.0  # Attention-weight dropout (training only).

    @nn.compact
    def __call__(self, x: jax.Array, *, deterministic: bool = True) -> jax.Array:
        width = x.shape[-1]
        if width % self.num_heads:
            raise ValueError(
                f"hidden_size {width} is not divisible by num_heads {self.num_heads}; "
                "pick a head count that divides the width."
            )
        head_dim = width // self.num_heads
        project = lambda name: nn.DenseGeneral(
            features=(self.num_heads, head_dim),
            kernel_init=nn.initializers.xavier_uniform(),
            dtype=self.dtype,
            name=name,
        )
        query = project("query")(x)  # [B, N, H, K]
        key = project("key")(x)  # [B, N, H, K]
        value = project("value")(x)  # [B, N, H, K]

        use_dropout = not deterministic and self.dropout_rate > 0.0
        if use_dropout or self.is_mutable_collection("intermediates"):
            attended, weights = explicit_attention(query, key, value)
            self.sow("intermediates", "attention_weights", weights)  # [B, H, N, N]
            if use_dropout:
                weights = nn.Dropout(self.dropout_rate, broadcast_dims=())(
                    weights, deterministic=False
                )
                attended = jnp.einsum("bhqs,bshk->bqhk", weights, value)
        else:
            attended = jax.nn.dot_product_attention(query, key, value)  # [B, N, H, K]

        return nn.DenseGeneral(
            features=width,
            axis=(-2, -1),
            kernel_init=nn.initializers.xavier_uniform(),
            dtype=self.dtype,
            name="out",
        )(attended)  # [B, N, D]
