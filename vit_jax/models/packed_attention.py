"""Softmax attention over packed q, k, v, with a hand-written backward pass for low precision.

`packed_attention(qkv)` takes the query, key and value projections as one `[B, N, 3, H, K]`
array (as the self-attention's single input matmul makes them) and returns `[B, N, H, K]`,
the same values as `explicit_attention` (below) on the three slices. For float32 it *is*
that function (JAX's own gradient; forward-mode differentiation keeps working). For other
dtypes (bfloat16) it has a custom VJP, because JAX's gradient of the explicit attention ran
slowly on XLA:CPU in three ways (ViT-B/16 shapes, batch 8, benchmarks/RESULTS.md):

- The q, k and v slices each reach the gradient as a zero-padded copy of the packed array, and
  XLA summed the three in one loop with a transpose and four conversions per element: 18 ms
  of thread time per layer, against 0.6 ms for the `jnp.stack` of the three gradients here.
- A bfloat16 dot whose operand is a transpose (the [B, N, H, K] -> [B, H, N, K] of each head
  input) is run by XLA:CPU with both operands converted to float32, because the transpose is
  folded into the dot's dimensions. Four of the six attention matmuls ran in float32 so.
  Here every dot gets a leading contracted unit axis (`_einsum`), after which XLA
  materialises its operands and keeps the dot in bfloat16 (as in `matmul._backward_einsum`).
- The softmax gradient reduced over the [N, N] weights; here it uses the identity
  `sum_j W_ij dP_ij = sum_k dO_ik O_ik`, a reduction over the [N, K] output instead.

At ViT-B/16 shapes, batch 8, bfloat16 (`python -m benchmarks.attention_core`): the core's
forward and backward pass took 24.7 ms against 55.4 ms for JAX's gradient (PyTorch's SDPA:
36.8 ms), and the whole trainer step ran at 2.50-2.67 img/s against 2.31-2.50 (three runs
each, alternated). For float32 the same custom VJP was slower (56-63 ms against 43-45 ms,
with or without the unit axes), so float32 keeps JAX's own gradient.

The softmax runs in float32 and the matmuls accumulate in float32, as in the explicit path;
the backward multiplies in the compute dtype, as `matmul.einsum_f32` does.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from vit_jax.models.matmul import einsum_f32


def _heads_first(x: jax.Array) -> jax.Array:
    return jnp.swapaxes(x, 1, 2)  # [B, N, H, ...] <-> [B, H, N, ...]


def _einsum(spec: str, lhs: jax.Array, rhs: jax.Array) -> jax.Array:
    """`jnp.einsum` accumulated in float32, with a contracted leading unit axis so that
    XLA:CPU cannot fold a transposed operand into the dot (see the module docstring)."""
    lhs_spec, rest = spec.split(",")
    spec = f"z{lhs_spec},z{rest}"
    return jnp.einsum(spec, lhs[None], rhs[None], preferred_element_type=jnp.float32)


def explicit_attention(
    query: jax.Array, key: jax.Array, value: jax.Array, *, scale: float | None = None
) -> tuple[jax.Array, jax.Array]:
    """Softmax attention that also returns the weights.

    Shapes: q, k, v [B, N, H, K] -> attended [B, N, H, K], weights [B, H, N, N]. `scale`
    defaults to `1 / sqrt(K)`; pass 1.0 when the query is already scaled.
    """
    if scale is None:
        scale = 1.0 / np.sqrt(query.shape[-1])
    # Heads next to batch first: XLA:CPU then runs both matmuls on contiguous [N, K] tiles
    # (3-4x faster than letting it pick the layouts of the einsums over [B, N, H, K]).
    query, key, value = (_heads_first(t) for t in (query, key, value))  # [B, H, N, K]
    logits = einsum_f32("bhqk,bhsk->bhqs", query, key)
    if scale != 1.0:
        logits = logits * jnp.float32(scale)
    # Softmax in float32 even for bfloat16 compute, as the fused kernels do.
    weights = jax.nn.softmax(logits, axis=-1).astype(query.dtype)  # [B, H, N, N]
    attended = einsum_f32("bhqs,bhsk->bhqk", weights, value)
    return _heads_first(attended.astype(query.dtype)), weights  # [B, N, H, K]


def packed_attention(qkv: jax.Array) -> jax.Array:
    """Softmax attention of `qkv [B, N, 3, H, K]` (query already scaled) -> `[B, N, H, K]`."""
    if qkv.dtype == jnp.float32:
        return explicit_attention(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], scale=1.0)[0]
    return _low_precision_attention(qkv)


@jax.custom_vjp
def _low_precision_attention(qkv: jax.Array) -> jax.Array:
    return _forward(qkv)[0]


def _forward(qkv):
    query, key, value = jnp.transpose(qkv, (2, 0, 3, 1, 4))  # [B, H, N, K] each
    logits = _einsum("bhqk,bhsk->bhqs", query, key)  # [B, H, N, N]
    weights = jax.nn.softmax(logits, axis=-1).astype(qkv.dtype)
    attended = _heads_first(_einsum("bhqs,bhsk->bhqk", weights, value).astype(qkv.dtype))
    return attended, (query, key, value, weights, attended)  # attended: [B, N, H, K]


def _backward(residuals, d_attended):
    query, key, value, weights, attended = residuals
    dtype = weights.dtype
    d_attended = d_attended.astype(dtype)  # [B, N, H, K]
    # Softmax gradient: dS = W * (dP - rowsum(W * dP)), and rowsum(W * dP) = rowsum(dO * O).
    row_sums = jnp.sum(d_attended.astype(jnp.float32) * attended.astype(jnp.float32), axis=-1)
    d_out = _heads_first(d_attended)  # [B, H, N, K]
    d_weights = _einsum("bhqk,bhsk->bhqs", d_out, value)  # [B, H, N, N]
    d_logits = weights * (d_weights - _heads_first(row_sums)[..., None])
    d_logits = d_logits.astype(dtype)
    d_query = _einsum("bhqs,bhsk->bhqk", d_logits, key)  # [B, H, N, K]
    d_key = _einsum("bhqs,bhqk->bhsk", d_logits, query)
    d_value = _einsum("bhqs,bhqk->bhsk", weights, d_out)
    d_qkv = jnp.stack([_heads_first(d) for d in (d_query, d_key, d_value)], axis=2)
    return (d_qkv.astype(dtype),)  # [B, N, 3, H, K]


_low_precision_attention.defvjp(_forward, _backward)
