"""The Vision Transformer (paper equations 1-4) as a Flax linen module.

Takes the fields of google-research/vision_transformer's model configs, so their configs and
notebooks carry over: `VisionTransformer(num_classes=10, **get_config('ViT-B_16'))`.

Intermediates come from the same model on request:

    logits, state = model.apply({'params': p}, x, mutable=['intermediates'])
    state['intermediates']['pre_logits']   # [B, D] or [B, R]
    state['intermediates']['encoded']      # [B, N, D], after the final LayerNorm
    attention_weights(state['intermediates'])  # [L] x [B, H, N, N]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, get_args

import flax.linen as nn
import jax
import jax.numpy as jnp

from vit_jax.errors import ConfigError
from vit_jax.models.attention import Implementation
from vit_jax.models.encoder import NUMBERED_BLOCK, STACKED_BLOCK, Encoder
from vit_jax.models.matmul import MatmulLibrary, MatmulOutputs, dense_dot_general
from vit_jax.models.patch_embedding import PatchEmbedding
from vit_jax.models.resnet import resnet_stem

Dtype = Any
Classifier = Literal["token", "gap", "unpooled", "token_unpooled"]
CLASSIFIERS: tuple[Classifier, ...] = get_args(Classifier)
TOKEN_CLASSIFIERS: tuple[Classifier, ...] = ("token", "token_unpooled")  # Prepend a class token.


class VisionTransformer(nn.Module):
    """ViT and hybrid ViT: images `[B, H, W, 3]` (NHWC, values in [-1, 1]) -> logits `[B, C]`.

    Attributes mirror the published model configs. `patches` and `transformer` are mappings
    (dicts or ConfigDicts): `patches['size']` is the patch size `(ph, pw)`; `transformer` holds
    `num_layers`, `mlp_dim`, `num_heads`, `dropout_rate`, `attention_dropout_rate`. `resnet`
    (`num_layers`, `width_factor`) adds the hybrid stem, or is None. `dtype` is the compute
    dtype (parameters stay float32); `stoch_depth` the drop-path rate of the last block;
    `remat` and `scan_layers` trade compute for memory and compile time (see `Encoder`).
    `attention_implementation` picks the attention core ("auto", "xla", "cudnn" for cuDNN
    flash attention on NVIDIA GPUs with bfloat16/float16 compute, "explicit"; see
    `SelfAttention`); `matmul_outputs` whether a bfloat16 model's weight matmuls (patch
    embedding, projections, MLP, pre-logits, head) return float32 or bfloat16 ("auto",
    "float32", "compute"); `matmul_library` who runs them and the explicit attention's products
    ("auto", "xla", or "onednn", "openblas" or "mkl" on CPU; `models.matmul`). None changes a
    parameter.
    """

    num_classes: int | None
    patches: Mapping[str, Any]
    hidden_size: int
    transformer: Mapping[str, Any]
    resnet: Mapping[str, Any] | None = None
    representation_size: int | None = None
    classifier: Classifier = "token"
    head_bias_init: float = 0.0
    model_name: str | None = None
    dtype: Dtype = jnp.float32
    stoch_depth: float = 0.0
    remat: bool = False
    scan_layers: bool = False
    attention_implementation: Implementation = "auto"
    matmul_outputs: MatmulOutputs = "auto"
    matmul_library: MatmulLibrary = "auto"

    def forward_features(
        self, inputs: jax.Array, *, train: bool, num_outputs: int | None = None
    ) -> jax.Array:
        """Stem, patch embedding, class token and encoder: `[B, H, W, 3] -> [B, N, D]`.

        `num_outputs=Q` returns the first Q tokens only, `[B, Q, D]`, computed with less work
        (see `Encoder`)."""
        unknown = sorted(set(self.transformer) - set(_ENCODER_FIELDS))
        if unknown:  # A misspelt field would otherwise silently keep its default.
            raise ConfigError(
                f"Unknown transformer fields {unknown}; the encoder takes {list(_ENCODER_FIELDS)}."
            )
        x = inputs.astype(self.dtype)
        if self.resnet is not None:
            x = resnet_stem(
                x, tuple(self.resnet["num_layers"]), self.resnet["width_factor"], self.dtype
            )  # [B, H/s, W/s, C]
        patch = tuple(self.patches["size"])
        x = PatchEmbedding(
            self.hidden_size,
            patch,
            dtype=self.dtype,
            matmul_outputs=self.matmul_outputs,
            matmul_library=self.matmul_library,
            name="embedding",
        )(x)
        x = x.astype(self.dtype)  # [B, gh, gw, D]
        batch, grid_h, grid_w, width = x.shape
        x = jnp.reshape(x, (batch, grid_h * grid_w, width))  # [B, gh*gw, D]

        if self.classifier in TOKEN_CLASSIFIERS:
            cls = self.param("cls", nn.initializers.zeros, (1, 1, width))  # [1, 1, D]
            cls = jnp.broadcast_to(cls.astype(self.dtype), (batch, 1, width))
            x = jnp.concatenate([cls, x], axis=1)  # [B, 1 + gh*gw, D]

        encoder = Encoder(
            **self.transformer,
            stoch_depth=self.stoch_depth,
            dtype=self.dtype,
            remat=self.remat,
            scan_layers=self.scan_layers,
            attention_implementation=self.attention_implementation,
            matmul_outputs=self.matmul_outputs,
            matmul_library=self.matmul_library,
            name="Transformer",
        )
        x = encoder(x, train=train, num_outputs=num_outputs)  # [B, N or Q, D]
        self.sow("intermediates", "encoded", x)
        return x

    def pooled_tokens(self) -> int | None:
        """How many leading tokens `pool` reads: 1 for 'token', None (all) otherwise."""
        return 1 if self.classifier == "token" else None

    def pool(self, x: jax.Array) -> jax.Array:
        """`[B, N, D]` -> `[B, D]` for 'token'/'gap'; unchanged for the unpooled classifiers."""
        if self.classifier == "token":
            return x[:, 0]  # [B, D]
        if self.classifier == "gap":
            return jnp.mean(x, axis=1)  # [B, D]
        return x  # [B, N, D]

    def forward_head(self, x: jax.Array) -> jax.Array:
        """Optional tanh pre-logits layer, then the zero-initialised linear head."""
        if self.representation_size is not None:
            x = nn.Dense(
                self.representation_size,
                dtype=self.dtype,
                dot_general=dense_dot_general(self.matmul_outputs, self.matmul_library),
                name="pre_logits",
            )(x)
            x = jnp.tanh(x).astype(self.dtype)
        self.sow("intermediates", "pre_logits", x)
        if self.num_classes:
            x = nn.Dense(
                self.num_classes,
                dtype=self.dtype,
                kernel_init=nn.initializers.zeros,
                bias_init=nn.initializers.constant(self.head_bias_init),
                dot_general=dense_dot_general(self.matmul_outputs, self.matmul_library),
                name="head",
            )(x).astype(self.dtype)
        return x

    @nn.compact
    def __call__(self, inputs: jax.Array, *, train: bool = False) -> jax.Array:
        if self.classifier not in CLASSIFIERS:
            raise ValueError(
                f"Unknown classifier {self.classifier!r}; expected one of {CLASSIFIERS}."
            )
        if inputs.ndim != 4 or inputs.shape[-1] != 3:
            raise ValueError(
                f"Expected images of shape [batch, height, width, 3] (NHWC, RGB); got "
                f"{tuple(inputs.shape)}. Convert grayscale/RGBA images to RGB first."
            )
        # The last block computes only the tokens `pool` reads (the class token for 'token';
        # the saving is in benchmarks/RESULTS.md, "Class token only in the last block"),
        # unless the intermediates ask for every token's encoding and attention weights.
        every_token = self.is_mutable_collection("intermediates")
        num_outputs = None if every_token else self.pooled_tokens()
        x = self.forward_features(inputs, train=train, num_outputs=num_outputs)
        return self.forward_head(self.pool(x))


_ENCODER_FIELDS = ("num_layers", "mlp_dim", "num_heads", "dropout_rate", "attention_dropout_rate")


def attention_weights(intermediates: Mapping[str, Any]) -> list[jax.Array]:
    """Per-layer attention weights `[B, H, N, N]`, in depth order, from sown intermediates."""
    encoder = intermediates["Transformer"]
    if STACKED_BLOCK in encoder:  # scan_layers: one stacked entry [L, B, H, N, N].
        stacked = encoder[STACKED_BLOCK]["MultiHeadDotProductAttention_1"]["attention_weights"][0]
        return list(stacked)
    blocks = sorted(
        (int(m.group(1)), name) for name in encoder if (m := NUMBERED_BLOCK.match(name))
    )
    return [
        encoder[name]["MultiHeadDotProductAttention_1"]["attention_weights"][0]
        for _, name in blocks
    ]
