"""Converts encoder parameters between the published per-layer layout and the stacked layout
of `scan_layers=True` models.

Published: `Transformer/encoderblock_{i}/...` for i in 0..L-1.
Stacked:   `Transformer/encoderblock/...`, every leaf with a leading layer axis of size L.
Checkpoints on disk always use the published layout; only in-memory trees are stacked.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from vit_jax.models.encoder import NUMBERED_BLOCK, STACKED_BLOCK, block_name


def is_stacked(params: Mapping[str, Any]) -> bool:
    return STACKED_BLOCK in params.get("Transformer", {})


def stack_encoder_blocks(params: Mapping[str, Any]) -> dict[str, Any]:
    """Published per-layer tree -> stacked tree (no-op if already stacked)."""
    if is_stacked(params):
        return dict(params)
    encoder = dict(params["Transformer"])
    layers = sorted(
        (int(m.group(1)), name) for name in encoder if (m := NUMBERED_BLOCK.match(name)) is not None
    )
    if [index for index, _ in layers] != list(range(len(layers))):
        raise ValueError(f"Encoder blocks are not numbered 0..L-1: {[name for _, name in layers]}.")
    blocks = [encoder.pop(name) for _, name in layers]
    encoder[STACKED_BLOCK] = jax.tree.map(lambda *leaves: np.stack(leaves), *blocks)
    return {**params, "Transformer": encoder}


def unstack_encoder_blocks(params: Mapping[str, Any]) -> dict[str, Any]:
    """Stacked tree -> published per-layer tree (no-op if already per-layer).

    Leaves may be arrays or `jax.ShapeDtypeStruct`s (shapes from `jax.eval_shape`).
    """
    if not is_stacked(params):
        return dict(params)
    encoder = dict(params["Transformer"])
    stacked = encoder.pop(STACKED_BLOCK)
    num_layers = jax.tree.leaves(stacked)[0].shape[0]
    for layer in range(num_layers):
        block = jax.tree.map(lambda leaf, i=layer: _layer(leaf, i), stacked)
        encoder[block_name(layer)] = block
    return {**params, "Transformer": encoder}


def _layer(leaf: Any, index: int) -> Any:
    if isinstance(leaf, jax.ShapeDtypeStruct):
        return jax.ShapeDtypeStruct(leaf.shape[1:], leaf.dtype)
    return leaf[index]
