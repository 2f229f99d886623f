"""Attention rollout (Abnar & Zuidema, 2020), the method behind the ViT paper's Figure 6.

Each layer's attention is averaged over heads, the identity is added for the residual
connection and rows are renormalised; multiplying these matrices from the first layer to the
last gives how much each output token draws on each input token. The class token's row over
the patches (or, without a class token, the mean row) is the map.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp


def rollout_matrix(attentions: Sequence[jax.Array]) -> jax.Array:
    """Per-layer attention `[L] x [B, H, N, N]` -> rolled-out attention `[B, N, N]`.

    Rows are queries and sum to 1: entry `[b, i, j]` is the share of input token `j` in
    output token `i` after all layers.
    """
    if not attentions:
        raise ValueError("attention_rollout needs the attention of at least one layer.")
    batch, _, tokens, _ = attentions[0].shape
    eye = jnp.eye(tokens, dtype=jnp.float32)  # [N, N]
    joint = jnp.broadcast_to(eye, (batch, tokens, tokens))  # [B, N, N]
    for weights in attentions:
        layer = jnp.mean(jnp.asarray(weights, jnp.float32), axis=1) + eye  # [B, N, N]
        layer = layer / jnp.sum(layer, axis=-1, keepdims=True)
        joint = jnp.einsum("bij,bjk->bik", layer, joint)  # This layer after the earlier ones.
    return joint


def attention_rollout(
    attentions: Sequence[jax.Array], has_class_token: bool, grid: tuple[int, int]
) -> jax.Array:
    """Per-layer attention `[L] x [B, H, N, N]` -> rollout maps `[B, gh, gw]`.

    With a class token, the map is its rolled-out attention to each patch (the patches' share
    of the prediction; it sums to 1 minus the class token's share of itself). Without one
    (GAP models), it is the mean over all output tokens, which sums to 1.
    """
    joint = rollout_matrix(attentions)  # [B, N, N]
    if has_class_token:
        weights = joint[:, 0, 1:]  # [B, gh*gw]
    else:
        weights = jnp.mean(joint, axis=1)  # [B, gh*gw]
    grid_h, grid_w = grid
    if weights.shape[-1] != grid_h * grid_w:
        raise ValueError(
            f"{weights.shape[-1]} patch tokens do not fill a {grid_h}x{grid_w} grid; check "
            "has_class_token."
        )
    return jnp.reshape(weights, (-1, grid_h, grid_w))
