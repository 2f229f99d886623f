"""Converts encoder parameters between the published per-layer layout and the stacked layout
of `scan_layers=True` models.

Published: `Transformer/encoderblock_{i}/...` for i in 0..L-1.
Stacked:   `Transformer/encoderblock/...`, every leaf with a leading layer axis of size L.
Checkpoints on disk always use the published layout; only in-memory trees are stacked.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

_BLOCK = re.compile(r"^encoderblock_(\d+)$")


def is_stacked(params: Mapping[str, Any]) -> bool:
    return "encoderblock" in params.get("Transformer", {})


def stack_encoder_blocks(params: Mapping[str, Any]) -> dict[str, Any]:
    """Published per-layer tree -> stacked tree (no-op if already stacked)."""
    if is_stacked(params):
        return dict(params)
    encoder = dict(params["Transformer"])
    layers = sorted(
        (int(m.group(1)), name) for name in encoder if (m := _BLOCK.match(name)) is not None
    )
    if [index for index, _ in layers] != list(range(len(layers))):
        raise ValueError(f"Encoder blocks are not numbered 0..L-1: {[name for _, name in layers]}.")
    blocks = [encoder.pop(name) for _, name in layers]
    encoder["encoderblock"] = jax.tree.map(lambda *leaves: np.stack(leaves), *blocks)
    return {**params, "Transformer": encoder}


def unstack_encoder_blocks(params: Mapping[str, Any]) -> dict[str, Any]:
    """Stacked tree -> published per-layer tree (no-op if already per-layer).

    Leaves may be arrays or `jax.ShapeDtypeStruct`s (shapes from `jax.eval_shape`).
    """
    if not is_stacked(params):
        return dict(params)
    encoder = dict(params["Transformer"])
    stacked = encoder.pop("encoderblock")
    num_layers = jax.tree.leaves(stacked)[0].shape[0]
    for layer in range(num_layers):
        block = jax.tree.map(lambda leaf, i=layer: _layer(leaf, i), stacked)
        encoder[f"encoderblock_{layer}"] = block
    return {**params, "Transformer": encoder}


def _layer(leaf: Any, index: int) -> Any:
    if isinstance(leaf, jax.ShapeDtypeStruct):
        return jax.ShapeDtypeStruct(leaf.shape[1:], leaf.dtype)
    return leaf[index]
