"""Pure key mapping between stored `.npz` layouts and the model's parameter tree (no I/O).

A stored file is flat: one array per '/'-joined path. Two layouts are in circulation:

- published (the released files, pre-linen Flax names): `encoderblock_i/LayerNorm_0`,
  `MultiHeadDotProductAttention_1`, `LayerNorm_2`, `MlpBlock_3`; hybrid GroupNorm
  `scale`/`bias` stored as `[1, 1, 1, C]`.
- linen (files written by current Flax code): `LayerNorm_0`, `MultiHeadDotProductAttention_0`,
  `LayerNorm_1`, `MlpBlock_0`; GroupNorm `[C]`.

The model uses the published names with GroupNorm `[C]`; `save` writes the published layout.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from vit_jax.models.encoder import NUMBERED_BLOCK

SEP = "/"

# Names inside an encoder block: linen's per-type numbering -> the published global numbering.
LINEN_TO_PUBLISHED = {
    "MultiHeadDotProductAttention_0": "MultiHeadDotProductAttention_1",
    "LayerNorm_1": "LayerNorm_2",
    "MlpBlock_0": "MlpBlock_3",
}

_GROUP_NORM = re.compile(r"^gn(\d+|_root|_proj)$")  # gn1..gn3, gn_root, gn_proj of the stem.


def flatten(tree: Mapping[str, Any]) -> dict[str, Any]:
    """`{'a': {'b': x}}` -> `{'a/b': x}`; leaves are anything that is not a mapping."""
    flat: dict[str, Any] = {}
    for name, value in tree.items():
        if SEP in name:
            raise ValueError(f"Parameter name {name!r} contains {SEP!r}.")
        if isinstance(value, Mapping):
            flat.update({f"{name}{SEP}{key}": leaf for key, leaf in flatten(value).items()})
        else:
            flat[name] = value
    return flat


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """`{'a/b': x}` -> `{'a': {'b': x}}`."""
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        *parents, leaf = key.split(SEP)
        node = tree
        for name in parents:
            node = node.setdefault(name, {})
            if not isinstance(node, dict):
                raise ValueError(f"{key!r} nests under an array of the same name.")
        if leaf in node:
            raise ValueError(f"{key!r} is both an array and a group of arrays.")
        node[leaf] = value
    return tree


def is_group_norm_param(key: str) -> bool:
    """True for `.../gn1/scale`, `gn_root/bias` and the like (hybrid ResNet stem)."""
    parts = key.split(SEP)
    return len(parts) >= 2 and bool(_GROUP_NORM.match(parts[-2])) and parts[-1] in ("scale", "bias")


def _published_key(key: str) -> str:
    parts = key.split(SEP)
    for i in range(1, len(parts)):
        if NUMBERED_BLOCK.match(parts[i - 1]):
            parts[i] = LINEN_TO_PUBLISHED.get(parts[i], parts[i])
    return SEP.join(parts)


def to_model(stored: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Flat arrays in either stored layout -> the model's nested tree.

    GroupNorm parameters of shape `[1, 1, 1, C]` become `[C]`; any other shape is left as is
    for the shape check against the model to report.
    """
    flat: dict[str, np.ndarray] = {}
    for key, value in stored.items():
        name = _published_key(key)
        if name in flat:
            raise ValueError(
                f"{key!r} and another array both map to {name!r}: the file mixes the "
                "published and linen layouts."
            )
        if is_group_norm_param(name) and value.ndim == 4 and value.shape[:3] == (1, 1, 1):
            value = value.reshape(value.shape[-1])  # [1, 1, 1, C] -> [C]
        flat[name] = value
    return unflatten(flat)


def to_published(params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The model's nested tree -> flat published layout (GroupNorm `[C]` -> `[1, 1, 1, C]`)."""
    flat = {}
    for key, value in flatten(params).items():
        value = np.asarray(value)
        if is_group_norm_param(key) and value.ndim == 1:
            value = value.reshape(1, 1, 1, -1)  # [C] -> [1, 1, 1, C]
        flat[_published_key(key)] = value
    return flat
