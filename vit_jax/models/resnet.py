"""The ResNet (BiT-style) stem of the hybrid ViT models: weight-standardised convolutions and
GroupNorm, with TF-style SAME padding. Parameter names follow the published hybrid files
(`conv_root`, `gn_root`, `block1/unit1/conv1`, ...)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any

WEIGHT_STD_EPS = 1e-5  # (w - mean) / (std + 1e-5): std plus eps, not sqrt(var + eps).
GROUP_NORM_EPS = 1e-6
GROUP_NORM_GROUPS = 32


def standardize_weight(kernel: jax.Array) -> jax.Array:
    """Standardises an HWIO kernel over H, W and input channels, per output channel."""
    kernel = kernel - jnp.mean(kernel, axis=(0, 1, 2), keepdims=True)
    return kernel / (jnp.std(kernel, axis=(0, 1, 2), keepdims=True) + WEIGHT_STD_EPS)


class StdConv(nn.Module):
    """Bias-free convolution with a weight-standardised kernel, `[B, H, W, C] -> [B, H', W', F]`.

    Padding is XLA's 'SAME', which pads like TensorFlow: the extra row/column of an odd total
    padding goes at the bottom/right. The published hybrid weights were trained with it.
    """

    features: int
    kernel_size: tuple[int, int]
    strides: tuple[int, int] = (1, 1)
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param(
            "kernel",
            nn.initializers.lecun_normal(),
            (*self.kernel_size, x.shape[-1], self.features),
            jnp.float32,
        )  # [kh, kw, C, F]
        kernel = standardize_weight(kernel)  # In float32, before any cast to the compute dtype.
        return jax.lax.conv_general_dilated(
            x.astype(self.dtype),
            kernel.astype(self.dtype),
            window_strides=self.strides,
            padding="SAME",
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )


def _group_norm(name: str, dtype: Dtype, zero_scale: bool = False) -> nn.GroupNorm:
    return nn.GroupNorm(
        num_groups=GROUP_NORM_GROUPS,
        epsilon=GROUP_NORM_EPS,
        dtype=dtype,
        scale_init=nn.initializers.zeros if zero_scale else nn.initializers.ones,
        name=name,
    )


class BottleneckUnit(nn.Module):
    """ResNet-v1.5 bottleneck: 1x1 -> 3x3 (strided) -> 1x1 (x4 channels), plus projection."""

    features: int
    strides: tuple[int, int] = (1, 1)
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        out_features = self.features * 4
        residual = x
        if x.shape[-1] != out_features or self.strides != (1, 1):
            residual = StdConv(out_features, (1, 1), self.strides, self.dtype, name="conv_proj")(x)
            residual = _group_norm("gn_proj", self.dtype)(residual)

        y = StdConv(self.features, (1, 1), dtype=self.dtype, name="conv1")(x)
        y = nn.relu(_group_norm("gn1", self.dtype)(y))
        y = StdConv(self.features, (3, 3), self.strides, self.dtype, name="conv2")(y)
        y = nn.relu(_group_norm("gn2", self.dtype)(y))
        y = StdConv(out_features, (1, 1), dtype=self.dtype, name="conv3")(y)
        # Zero-initialised last norm: each unit starts as the identity.
        y = _group_norm("gn3", self.dtype, zero_scale=True)(y)
        return nn.relu(residual + y)  # [B, H', W', 4F]


class ResNetStage(nn.Module):
    """`num_units` bottleneck units; the first one applies the stage's stride."""

    num_units: int
    features: int
    first_stride: tuple[int, int]
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for unit in range(self.num_units):
            strides = self.first_stride if unit == 0 else (1, 1)
            x = BottleneckUnit(self.features, strides, self.dtype, name=f"unit{unit + 1}")(x)
        return x


def resnet_stem(
    x: jax.Array, num_layers: Sequence[int], width_factor: int = 1, dtype: Dtype = jnp.float32
) -> jax.Array:
    """Root (7x7/2 conv, GroupNorm, ReLU, 3x3/2 max-pool) then bottleneck stages.

    A function rather than a module: it must be called inside a compact method, and its
    submodules land directly in the caller's scope, because the published hybrid files keep
    `conv_root`, `gn_root` and `block1..4` at the top level of the tree.

    `num_layers=()` is the root only (R+ViT-Ti/16). Stage i has width 64 * width_factor * 2^i;
    every stage after the first halves the resolution.
    """
    width = int(64 * width_factor)
    x = StdConv(width, (7, 7), (2, 2), dtype, name="conv_root")(x)  # [B, H/2, W/2, w]
    x = nn.relu(_group_norm("gn_root", dtype)(x))
    x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")  # [B, H/4, W/4, w]
    for stage, num_units in enumerate(num_layers):
        x = ResNetStage(
            num_units=num_units,
            features=width * 2**stage,
            first_stride=(2, 2) if stage > 0 else (1, 1),
            dtype=dtype,
            name=f"block{stage + 1}",
        )(x)  # [B, H/(4*2^stage), W/(4*2^stage), 4*w*2^stage]
    return x
