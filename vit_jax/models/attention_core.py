"""The softmax attention cores of `models.attention`, over [B, N, H, K] heads.

`explicit_attention(q, k, v)` returns the attended values and the weights (for dropout on the
weights and for `intermediates`). `packed_attention(qkv)` takes the query, key and value
projections as one `[B, N, 3, H, K]` array, as the self-attention's single input matmul makes
them, and returns `[B, N, H, K]`: the same values as `explicit_attention` on the three slices.
For float32 it *is* that function (JAX's own gradient; forward-mode differentiation keeps
working). For narrower dtypes (bfloat16, float16) it has a hand-written VJP, because JAX's
gradient of the explicit attention ran slowly on XLA:CPU in three ways:

- The q, k and v slices each reach the gradient as a zero-padded copy of the packed array, and
  XLA summed the three in one transposing loop with four conversions per element; here the
  three gradients are stacked.
- Four of the six attention matmuls ran in float32: XLA folds the [B, N, H, K] -> [B, H, N, K]
  transpose of an operand into a bfloat16 dot and then converts it. Here every dot is
  `matmul.einsum_f32_materialised`, which keeps them in bfloat16 (tested on the compiled HLO).
- The softmax gradient reduced over the [N, N] weights; here it uses the identity
  `sum_j W_ij dP_ij = sum_k dO_ik O_ik`, a reduction over the [N, K] output instead.

At ViT-B/16 shapes, batch 8, bfloat16, the core's forward and backward pass is 2.2x faster
than JAX's gradient and the trainer step 1.06x (benchmarks/RESULTS.md, "Packed attention";
`python -m benchmarks.attention_core`). For float32 the same VJP was slower, with or without
the unit axes, so float32 keeps JAX's gradient.

`packed_attention(qkv, products="onednn")` (or "openblas", "mkl") runs the same VJP, for float32
too, with its six batched products by that library's XLA custom call on CPU (`models.onednn_matmul`,
`models.cblas_matmul`) instead of XLA's dots: the explicit attention of a model with that
`matmul_library` (`models.attention`), measured in `models.backend_tuning` (item 5; "auto" takes
oneDNN's for bfloat16 also on AMD CPUs with AVX-512 bf16, `resolve_attention_products`). Reverse
mode only, as the custom VJP is, float32 included.

The softmax runs in float32 and the matmuls accumulate in float32, as in the explicit path;
the backward multiplies in the compute dtype, as `matmul.einsum_f32` does.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from vit_jax.models.backend_tuning import CUSTOM_CALLS
from vit_jax.models.matmul import (
    MatmulLibrary,
    einsum_f32,
    einsum_f32_materialised,
    resolve_attention_products,
)

# Who multiplies in `packed_attention`: XLA's dots, or a custom call's (the model's
# `matmul_library`).
Products = MatmulLibrary
# The core's three kinds of product over [B, H, ., .] -> which operand a custom call takes
# transposed.
CUSTOM_CALL_LAYOUTS = {
    "bhqk,bhsk->bhqs": (False, True),  # Q K^T, dO V^T.
    "bhqs,bhsk->bhqk": (False, False),  # W V, dS K.
    "bhqs,bhqk->bhsk": (True, False),  # dS^T Q, W^T dO.
}


def _swap_heads_and_tokens(x: jax.Array) -> jax.Array:
    return jnp.swapaxes(x, 1, 2)  # [B, N, H, ...] <-> [B, H, N, ...]


def explicit_attention(
    query: jax.Array, key: jax.Array, value: jax.Array, *, scale: float | None = None
) -> tuple[jax.Array, jax.Array]:
    """Softmax attention that also returns the weights.

    Shapes: q [B, Q, H, K], k, v [B, N, H, K] -> attended [B, Q, H, K], weights [B, H, Q, N]
    (Q = N in self-attention; fewer queries in a class-token-only last block). `scale`
    defaults to `1 / sqrt(K)`; pass 1.0 when the query is already scaled.
    """
    if scale is None:
        scale = 1.0 / np.sqrt(query.shape[-1])
    # Heads next to batch first: XLA:CPU then runs both matmuls on contiguous [N, K] tiles
    # (3-4x faster than letting it pick the layouts of the einsums over [B, N, H, K]).
    query, key, value = (_swap_heads_and_tokens(t) for t in (query, key, value))  # [B, H, ., K]
    logits = einsum_f32("bhqk,bhsk->bhqs", query, key)
    if scale != 1.0:
        logits = logits * jnp.float32(scale)
    # Softmax in float32 even for bfloat16 compute, as the fused kernels do.
    weights = jax.nn.softmax(logits, axis=-1).astype(query.dtype)  # [B, H, Q, N]
    attended = einsum_f32("bhqs,bhsk->bhqk", weights, value)
    return _swap_heads_and_tokens(attended.astype(query.dtype)), weights  # [B, Q, H, K]


def packed_attention(qkv: jax.Array, *, products: Products = "xla") -> jax.Array:
    """Softmax attention of `qkv [B, N, 3, H, K]` (query already scaled) -> `[B, N, H, K]`,
    its batched products by `products` (see the module; "auto": `resolve_attention_products`)."""
    products = resolve_attention_products(products, qkv.dtype)
    if products == "xla" and jnp.finfo(qkv.dtype).bits >= 32:
        return explicit_attention(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], scale=1.0)[0]
    return _attention_with_vjp(products, qkv)


def _product(products: Products, spec: str, lhs: jax.Array, rhs: jax.Array) -> jax.Array:
    """`einsum(spec, lhs, rhs)` in float32, `spec` one of `CUSTOM_CALL_LAYOUTS`."""
    if products in CUSTOM_CALLS:
        lhs_transposed, rhs_transposed = CUSTOM_CALL_LAYOUTS[spec]
        return CUSTOM_CALLS[products].batched_matmul(
            lhs, rhs, lhs_transposed=lhs_transposed, rhs_transposed=rhs_transposed
        )
    return einsum_f32_materialised(spec, lhs, rhs)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _attention_with_vjp(products: Products, qkv: jax.Array) -> jax.Array:
    return _forward(products, qkv)[0]


def _forward(products, qkv):
    query, key, value = jnp.transpose(qkv, (2, 0, 3, 1, 4))  # [B, H, N, K] each
    logits = _product(products, "bhqk,bhsk->bhqs", query, key)  # [B, H, N, N]
    weights = jax.nn.softmax(logits, axis=-1).astype(qkv.dtype)
    attended = _product(products, "bhqs,bhsk->bhqk", weights, value).astype(qkv.dtype)
    attended = _swap_heads_and_tokens(attended)  # [B, N, H, K]
    return attended, (query, key, value, weights, attended)


def _backward(products, residuals, d_attended):
    query, key, value, weights, attended = residuals  # d_attended: [B, N, H, K]
    dtype = weights.dtype
    # Softmax gradient: dS = W * (dP - rowsum(W * dP)), and rowsum(W * dP) = rowsum(dO * O).
    # O is the output rounded to the compute dtype: that adds an error of the size of one
    # bfloat16 rounding, as JAX's own gradient has from rounding dP (both tested against
    # float32 in tests/models/test_attention_core.py).
    row_sums = jnp.sum(d_attended.astype(jnp.float32) * attended.astype(jnp.float32), axis=-1)
    row_sums = _swap_heads_and_tokens(row_sums)[..., None]  # [B, H, N, 1]
    d_out = _swap_heads_and_tokens(d_attended.astype(dtype))  # [B, H, N, K]
    d_weights = _product(products, "bhqk,bhsk->bhqs", d_out, value)  # [B, H, N, N]
    d_logits = (weights * (d_weights - row_sums)).astype(dtype)  # [B, H, N, N]
    d_query = _product(products, "bhqs,bhsk->bhqk", d_logits, key)  # [B, H, N, K]
    d_key = _product(products, "bhqs,bhqk->bhsk", d_logits, query)  # [B, H, N, K]
    d_value = _product(products, "bhqs,bhqk->bhsk", weights, d_out)  # [B, H, N, K]
    grads = [_swap_heads_and_tokens(d.astype(dtype)) for d in (d_query, d_key, d_value)]
    return (jnp.stack(grads, axis=2),)  # [B, N, 3, H, K]


_attention_with_vjp.defvjp(_forward, _backward)
