"""Multi-head self-attention that keeps the published parameter layout.

The parameters are exactly those of the published checkpoints (and of Flax's
`nn.MultiHeadDotProductAttention`): `query`/`key`/`value` kernels `[D, heads, head_dim]`
with biases `[heads, head_dim]`, and an `out` kernel `[heads, head_dim, D]` with bias `[D]`.

The computation is arranged for speed without changing that layout: the three input
projections run as one `[D, 3 * heads * head_dim]` matmul whose kernel is concatenated at trace
time, and the `1 / sqrt(head_dim)` scale is folded into the query kernel and bias. Matmuls
accumulate in float32 (`preferred_element_type`) and the softmax runs in float32, also for
bfloat16 compute. `matmul_outputs="compute"` (the GPU's choice) returns the projections in the
compute dtype instead; the softmax stays float32 either way. The matmuls' backward passes run
in the compute dtype (`vit_jax.models.matmul`).

The attention core (`implementation`): "auto" (default) takes the default backend's choice in
`vit_jax.models.backend_tuning` (the explicit softmax attention of `vit_jax.models.attention_core`
on CPU; cuDNN's flash attention on NVIDIA GPUs that run it; `jax.nn.dot_product_attention`, left to
JAX, elsewhere; each measured there). "xla" and "cudnn" force `dot_product_attention` with that
implementation ("cudnn" at even sequence lengths, `even_length_attention`); "explicit" forces the
explicit path. Its products, like the projections', run by `matmul_library` ("xla"; "onednn",
"openblas" or "mkl": a CPU custom call, `models.onednn_matmul` or `models.cblas_matmul`, an optional
build, with a clear error where it does not run; "auto": the library `backend_tuning` picks, item 5,
which for the explicit core's products differs from the projections' on AMD CPUs with AVX-512 bf16:
oneDNN's for bfloat16). All give the same outputs within float tolerance (tested). The explicit path
runs `attention_core.packed_attention` on the packed q, k, v (its bfloat16 gradient is hand-written
for speed) unless the weights are needed: attention-weight dropout or `intermediates`. With
`num_queries`, only the first tokens' queries are projected and attend (the class-token classifier's
last block, see `models.Encoder`); the explicit path then runs `explicit_attention`.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vit_jax.errors import ConfigError
from vit_jax.models import backend_tuning
from vit_jax.models.attention_core import explicit_attention, packed_attention
from vit_jax.models.matmul import (
    MatmulLibrary,
    MatmulOutputs,
    einsum_f32,
    matmul,
)

Dtype = Any
Implementation = Literal["auto", "xla", "cudnn", "explicit"]
IMPLEMENTATIONS: tuple[Implementation, ...] = get_args(Implementation)


def _flat_xavier_uniform(num_in_axes: int):
    """Flax `DenseGeneral`'s kernel init: Xavier over the kernel flattened to 2-D."""
    base = nn.initializers.xavier_uniform()

    def init(rng, shape, dtype=jnp.float32):
        flat = (int(np.prod(shape[:num_in_axes])), int(np.prod(shape[num_in_axes:])))
        return jnp.reshape(base(rng, flat, dtype), shape)

    return init


class _Projection(nn.Module):
    """Declares the parameters of one `DenseGeneral` (same names, shapes and initialisation)
    and returns them, so that several projections can run as one matmul."""

    kernel_shape: tuple[int, ...]
    num_in_axes: int

    @nn.compact
    def __call__(self) -> tuple[jax.Array, jax.Array]:
        kernel = self.param("kernel", _flat_xavier_uniform(self.num_in_axes), self.kernel_shape)
        bias = self.param("bias", nn.initializers.zeros, self.kernel_shape[self.num_in_axes :])
        return kernel, bias


def _dense(
    x: jax.Array,
    kernel: jax.Array,
    bias: jax.Array,
    outputs: MatmulOutputs,
    library: MatmulLibrary,
) -> jax.Array:
    """`x [..., I] @ kernel [I, O] + bias [O]` in x's dtype, accumulating in float32 (by
    `library`); the bias is added in float32 or in x's dtype, as `outputs` says
    (`models.matmul`)."""
    y = matmul(x, kernel.astype(x.dtype), outputs, library)
    return (y + bias.astype(y.dtype)).astype(x.dtype)


def even_length_attention(
    query: jax.Array, key: jax.Array, value: jax.Array, implementation: str
) -> jax.Array:
    """`jax.nn.dot_product_attention` (scale 1) on [B, Q, H, K] queries and [B, N, H, K] keys and
    values, run at even sequence lengths.

    Why: cuDNN's fused attention has no backward pass for odd lengths (jax 0.11.2 raises
    "Unsupported sequence length Q 197, KV 197" when a ViT-B/16 at 224 px trains, and the
    class-token-only last block has Q = 1). An odd length gets one zero token: its query row
    is sliced off the output, and its key is hidden by the kernel's padding mask
    (`key_value_seq_lengths`), so every real query attends to exactly its own keys.
    """
    batch, queries, keys = query.shape[0], query.shape[1], key.shape[1]
    lengths = {}  # Even lengths: no padding, no mask.
    if queries % 2 or keys % 2:
        lengths = {
            "query_seq_lengths": jnp.full((batch,), queries, jnp.int32),
            "key_value_seq_lengths": jnp.full((batch,), keys, jnp.int32),
        }

    def pad(x: jax.Array) -> jax.Array:
        odd = x.shape[1] % 2
        return jnp.pad(x, ((0, 0), (0, 1), (0, 0), (0, 0))) if odd else x

    attended = jax.nn.dot_product_attention(
        pad(query), pad(key), pad(value), scale=1.0, implementation=implementation, **lengths
    )  # [B, Q rounded up to even, H, K]
    return attended[:, :queries]


def check_implementation(implementation: str) -> None:
    """Raises a ConfigError naming the choices unless `implementation` is one of them."""
    if implementation == "onednn":  # Session 29's option, now a model-wide one.
        raise ConfigError(
            "attention_implementation 'onednn' moved: set model.matmul_library='onednn' (oneDNN "
            "runs the dense layers and the explicit attention's products) and leave the "
            "attention 'auto' or 'explicit'."
        )
    if implementation not in IMPLEMENTATIONS:
        raise ConfigError(
            f"Unknown attention_implementation {implementation!r} (config key "
            f"model.attention_implementation); expected one of {IMPLEMENTATIONS}."
        )


class SelfAttention(nn.Module):
    """Self-attention over a token sequence, `[B, N, D] -> [B, N, D]` (or the first Q tokens'
    outputs, `[B, Q, D]`, with `num_queries=Q`)."""

    num_heads: int
    dtype: Dtype = jnp.float32
    dropout_rate: float = 0.0  # Attention-weight dropout (training only).
    implementation: Implementation = "auto"  # See the module docstring.
    matmul_outputs: MatmulOutputs = "auto"  # Projections' output dtype (`models.matmul`).
    matmul_library: MatmulLibrary = "auto"  # Who runs the projections and the explicit products.

    @nn.compact
    def __call__(
        self, x: jax.Array, *, deterministic: bool = True, num_queries: int | None = None
    ) -> jax.Array:
        """`[B, N, D] -> [B, N, D]`; with `num_queries=Q`, `[B, N, D] -> [B, Q, D]`: only the
        first Q tokens attend (to all N), for a last block whose other outputs are unused."""
        batch, _, width = x.shape
        check_implementation(self.implementation)
        if width % self.num_heads:
            raise ValueError(
                f"hidden_size {width} is not divisible by num_heads {self.num_heads}; "
                "pick a head count that divides the width."
            )
        heads, head_dim = self.num_heads, width // self.num_heads
        in_shape = (width, heads, head_dim)
        query_w, query_b = _Projection(in_shape, 1, name="query")()  # [D, H, K], [H, K]
        key_w, key_b = _Projection(in_shape, 1, name="key")()
        value_w, value_b = _Projection(in_shape, 1, name="value")()
        out_w, out_b = _Projection((heads, head_dim, width), 2, name="out")()  # [H, K, D], [D]

        # Several projections run as one matmul of concatenated kernels; the softmax scale is
        # folded into the query's kernel and bias.
        scale = 1.0 / np.sqrt(head_dim)
        projections = [(query_w * scale, query_b * scale), (key_w, key_b), (value_w, value_b)]

        def project(tokens: jax.Array, parts: list) -> jax.Array:
            """`[B, T, D] -> [B, T, len(parts), H, K]`."""
            kernel = jnp.concatenate([w for w, _ in parts], axis=1)  # [D, P*H, K]
            bias = jnp.concatenate([b for _, b in parts], axis=0)  # [P*H, K]
            out = _dense(
                tokens,
                kernel.reshape(width, -1),
                bias.reshape(-1),
                self.matmul_outputs,
                self.matmul_library,
            )  # [B, T, P*H*K]
            return out.reshape(*tokens.shape[:2], len(parts), heads, head_dim)

        x = x.astype(self.dtype)
        if num_queries is None:
            qkv = project(x, projections)  # [B, N, 3, H, K]
            query, key, value = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # [B, N, H, K] each
        else:  # Keys and values of every token, queries of the first few only.
            qkv = None
            query = project(x[:, :num_queries], projections[:1])[:, :, 0]  # [B, Q, H, K]
            kv = project(x, projections[1:])  # [B, N, 2, H, K]
            key, value = kv[:, :, 0], kv[:, :, 1]  # [B, N, H, K] each

        use_dropout = not deterministic and self.dropout_rate > 0.0
        if use_dropout or self.is_mutable_collection("intermediates"):
            attended, weights = explicit_attention(query, key, value, scale=1.0)
            self.sow("intermediates", "attention_weights", weights)  # [B, H, N or Q, N]
            if use_dropout:
                weights = nn.Dropout(self.dropout_rate, broadcast_dims=())(
                    weights, deterministic=False
                )
                attended = einsum_f32("bhqs,bshk->bqhk", weights, value).astype(self.dtype)
        else:
            implementation = self.implementation
            if implementation == "auto":
                implementation = backend_tuning.auto_attention(head_dim, self.dtype)
            if implementation == "explicit":
                if qkv is None:  # The few queries of a last block: XLA's products.
                    attended = explicit_attention(query, key, value, scale=1.0)[0]  # [B, Q, H, K]
                else:
                    attended = packed_attention(qkv, products=self.matmul_library)  # [B, N, H, K]
            elif implementation == "cudnn":
                attended = even_length_attention(query, key, value, "cudnn")  # [B, N or Q, H, K]
            else:  # "xla", or None: JAX's pick.
                attended = jax.nn.dot_product_attention(
                    query, key, value, scale=1.0, implementation=implementation
                )  # [B, N or Q, H, K]

        attended = attended.reshape(batch, query.shape[1], width)  # [B, N or Q, H*K]
        return _dense(
            attended, out_w.reshape(width, width), out_b, self.matmul_outputs, self.matmul_library
        )  # [B, N or Q, D]
