"""The Transformer encoder of ViT (paper equations 2-4): pre-LayerNorm blocks.

Submodule names are the published ones (`LayerNorm_0`, `MultiHeadDotProductAttention_1`,
`LayerNorm_2`, `MlpBlock_3`, `posembed_input`, `encoder_norm`), set explicitly so they do not
depend on Flax's automatic naming, which changed between Flax versions.
"""

from __future__ import annotations

import re
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from vit_jax.models.attention import Implementation, SelfAttention
from vit_jax.models.matmul import MatmulLibrary, MatmulOutputs, dense_dot_general

Dtype = Any

LAYER_NORM_EPS = 1e-6  # The published models use 1e-6, not Flax's or PyTorch's default.

# Layer i's block is `encoderblock_{i}` (the published layout); with `scan_layers` one block,
# `encoderblock`, holds every layer's parameters stacked along a leading layer axis.
STACKED_BLOCK = "encoderblock"
NUMBERED_BLOCK = re.compile(r"^encoderblock_(\d+)$")  # Group 1: the layer.


def block_name(layer: int) -> str:
    """The published name of the block of layer `layer` (counting from 0)."""
    return f"encoderblock_{layer}"


class MlpBlock(nn.Module):
    """Dense -> tanh-GELU -> Dense, `[B, N, D] -> [B, N, D]`.

    Bias and GELU are applied to the float32 matmul output, then cast to the compute dtype;
    with "compute" `matmul_outputs` (the GPU's choice) to the compute-dtype output.
    """

    mlp_dim: int
    dtype: Dtype = jnp.float32
    dropout_rate: float = 0.0
    matmul_outputs: MatmulOutputs = "auto"  # See `models.matmul`.
    matmul_library: MatmulLibrary = "auto"  # See `models.matmul`.

    @nn.compact
    def __call__(self, x: jax.Array, *, deterministic: bool = True) -> jax.Array:
        width = x.shape[-1]
        dense = lambda features, name: nn.Dense(
            features,
            dtype=self.dtype,
            kernel_init=nn.initializers.xavier_uniform(),
            bias_init=nn.initializers.normal(stddev=1e-6),
            dot_general=dense_dot_general(self.matmul_outputs, self.matmul_library),
            name=name,
        )
        x = dense(self.mlp_dim, "Dense_0")(x)  # [B, N, M], float32 or the compute dtype
        # The published models use the tanh approximation.
        x = nn.gelu(x, approximate=True).astype(self.dtype)
        x = nn.Dropout(rate=self.dropout_rate)(x, deterministic=deterministic)
        x = dense(width, "Dense_1")(x).astype(self.dtype)  # [B, N, D]
        return nn.Dropout(rate=self.dropout_rate)(x, deterministic=deterministic)


def drop_path(
    module: nn.Module, x: jax.Array, rate: float | jax.Array, deterministic: bool
) -> jax.Array:
    """Stochastic depth: drops a whole residual branch per example during training.

    `rate` may be traced (a per-layer rate scanned over the stacked blocks).
    """
    if deterministic or (isinstance(rate, float) and rate == 0.0):
        return x
    keep = 1.0 - rate
    mask_shape = (x.shape[0],) + (1,) * (x.ndim - 1)  # [B, 1, 1]
    mask = jax.random.bernoulli(module.make_rng("dropout"), keep, mask_shape)
    return jnp.where(mask, x / keep, 0.0).astype(x.dtype)


class EncoderBlock(nn.Module):
    """x + MSA(LN(x)), then x + MLP(LN(x)) (paper equations 2 and 3)."""

    mlp_dim: int
    num_heads: int
    dtype: Dtype = jnp.float32
    dropout_rate: float = 0.0
    attention_dropout_rate: float = 0.0
    drop_path_rate: float = 0.0
    attention_implementation: Implementation = "auto"  # See `SelfAttention`.
    matmul_outputs: MatmulOutputs = "auto"  # See `models.matmul`.
    matmul_library: MatmulLibrary = "auto"  # See `models.matmul`.

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        deterministic: bool = True,
        drop_path_rate: float | jax.Array | None = None,
        num_outputs: int | None = None,
    ) -> jax.Array:
        """`[B, N, D] -> [B, N, D]`, or `[B, num_outputs, D]`: only the first tokens' outputs,
        which attend to every token (the others' queries, attention and MLP are skipped)."""
        rate = self.drop_path_rate if drop_path_rate is None else drop_path_rate
        y = nn.LayerNorm(epsilon=LAYER_NORM_EPS, dtype=self.dtype, name="LayerNorm_0")(x)
        y = SelfAttention(
            num_heads=self.num_heads,
            dtype=self.dtype,
            dropout_rate=self.attention_dropout_rate,
            implementation=self.attention_implementation,
            matmul_outputs=self.matmul_outputs,
            matmul_library=self.matmul_library,
            name="MultiHeadDotProductAttention_1",
        )(y, deterministic=deterministic, num_queries=num_outputs)  # [B, N or Q, D]
        y = nn.Dropout(rate=self.dropout_rate)(y, deterministic=deterministic)
        if num_outputs is not None:
            x = x[:, :num_outputs]  # [B, Q, D]
        x = x + drop_path(self, y, rate, deterministic)

        y = nn.LayerNorm(epsilon=LAYER_NORM_EPS, dtype=self.dtype, name="LayerNorm_2")(x)
        y = MlpBlock(
            mlp_dim=self.mlp_dim,
            dtype=self.dtype,
            dropout_rate=self.dropout_rate,
            matmul_outputs=self.matmul_outputs,
            matmul_library=self.matmul_library,
            name="MlpBlock_3",
        )(y, deterministic=deterministic)  # [B, N or Q, D]
        return x + drop_path(self, y, rate, deterministic)


class AddPositionEmbs(nn.Module):
    """Adds a learned position embedding `[1, N, D]` (class-token slot included)."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        pos_embedding = self.param(
            "pos_embedding", nn.initializers.normal(stddev=0.02), (1, *x.shape[1:])
        )  # [1, N, D]
        return x + pos_embedding.astype(x.dtype)


class Encoder(nn.Module):
    """Position embeddings, `num_layers` blocks and the final LayerNorm, `[B, N, D] -> [B, N, D]`.

    `stoch_depth` is the drop-path rate of the last block; earlier blocks get rates that grow
    linearly from 0 (the timm/DeiT convention). `remat` recomputes each block's activations in
    the backward pass to save memory. `scan_layers` runs one block under `nn.scan`, which
    compiles the block once instead of `num_layers` times; its parameters are then stacked
    under `encoderblock` with a leading layer axis (`vit_jax.models.scan_layout` converts to
    and from the published per-layer layout).
    """

    num_layers: int
    mlp_dim: int
    num_heads: int
    dropout_rate: float = 0.0
    attention_dropout_rate: float = 0.0
    stoch_depth: float = 0.0
    dtype: Dtype = jnp.float32
    remat: bool = False
    scan_layers: bool = False
    attention_implementation: Implementation = "auto"
    matmul_outputs: MatmulOutputs = "auto"
    matmul_library: MatmulLibrary = "auto"

    @nn.compact
    def __call__(
        self, x: jax.Array, *, train: bool = False, num_outputs: int | None = None
    ) -> jax.Array:
        """`[B, N, D] -> [B, N, D]`; with `num_outputs=Q`, `[B, Q, D]`: the first Q tokens only.

        The last block then computes only those tokens' queries, attention and MLP, which
        gives the same values (each token's output is a function of its own row given every
        token's keys and values) for less work: a class-token classifier needs one token. With
        `scan_layers` every layer runs the same program, so all tokens are computed and sliced.
        """
        x = AddPositionEmbs(name="posembed_input")(x)
        x = nn.Dropout(rate=self.dropout_rate)(x, deterministic=not train)

        # `deterministic` and `num_outputs` (arguments 2 and 4, counting self) select Python
        # branches and shapes: static for remat. Inside a scan, remat needs no CSE barriers
        # (`jax.checkpoint`'s `prevent_cse` docs); they would only block XLA optimisations of
        # the loop body.
        block_cls = (
            nn.remat(EncoderBlock, static_argnums=(2, 4), prevent_cse=not self.scan_layers)
            if self.remat
            else EncoderBlock
        )
        make_block = lambda name, rate: block_cls(
            mlp_dim=self.mlp_dim,
            num_heads=self.num_heads,
            dtype=self.dtype,
            dropout_rate=self.dropout_rate,
            attention_dropout_rate=self.attention_dropout_rate,
            drop_path_rate=rate,
            attention_implementation=self.attention_implementation,
            matmul_outputs=self.matmul_outputs,
            matmul_library=self.matmul_library,
            name=name,
        )
        rates = [self.stoch_depth * i / max(self.num_layers - 1, 1) for i in range(self.num_layers)]
        if self.scan_layers:
            # With no stochastic depth the block's own rate (0) applies: no RNG is consumed.
            use_rate = self.stoch_depth > 0.0
            body = lambda block, carry, rate: (
                block(carry, not train, rate if use_rate else None, None),
                None,
            )
            scanned = nn.scan(
                body,
                variable_axes={"params": 0, "intermediates": 0},
                split_rngs={"params": True, "dropout": True},
                length=self.num_layers,
            )
            x, _ = scanned(make_block(STACKED_BLOCK, 0.0), x, jnp.asarray(rates))  # [B, N, D]
            if num_outputs is not None:
                x = x[:, :num_outputs]  # [B, Q, D]
        else:
            for layer, rate in enumerate(rates):
                last = layer == self.num_layers - 1
                block = make_block(block_name(layer), rate)
                x = block(x, not train, None, num_outputs if last else None)  # [B, N or Q, D]
        return nn.LayerNorm(epsilon=LAYER_NORM_EPS, dtype=self.dtype, name="encoder_norm")(x)
