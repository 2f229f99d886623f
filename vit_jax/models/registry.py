"""The one table of published ViT variants, and name resolution.

`get_config('ViT-B_16')` returns the same fields as google-research/vision_transformer's
model configs; `get_model('ViT-B_16', num_classes=10)` builds the module. AugReg's short names
(`B_16`, `R26_S_32`, `R_Ti_16`) and AugReg file stems (`B_16-i21k-300ep-lr_0.001-...`) resolve
to the same entries.
"""

from __future__ import annotations

import difflib
import re
from typing import Any, NamedTuple

import ml_collections

from vit_jax.models.attention import check_implementation
from vit_jax.models.matmul import check_library, check_outputs
from vit_jax.models.vit import VisionTransformer


class Width(NamedTuple):
    hidden_size: int
    mlp_dim: int
    num_heads: int
    num_layers: int
    dropout_rate: float


# Transformer sizes (paper Table 1, plus AugReg's Ti and S). L and H were trained with dropout.
WIDTHS: dict[str, Width] = {
    "Ti": Width(192, 768, 3, 12, 0.0),
    "S": Width(384, 1536, 6, 12, 0.0),
    "B": Width(768, 3072, 12, 12, 0.0),
    "L": Width(1024, 4096, 16, 24, 0.1),
    "H": Width(1280, 5120, 16, 32, 0.1),
}


class Variant(NamedTuple):
    width: str  # Key of WIDTHS.
    patch: int  # Patch size on the embedding input (the ResNet feature map for hybrids).
    classifier: str = "token"
    resnet_layers: tuple[int, ...] | None = None  # None: no ResNet stem.


# Every published model. Hybrids embed 1x1 patches of the ResNet features (total stride 16 or
# 32), except R+Ti/16 whose root-only stem (stride 4) is followed by 8x8 patches.
VARIANTS: dict[str, Variant] = {
    "ViT-Ti_16": Variant("Ti", 16),
    "ViT-S_16": Variant("S", 16),
    "ViT-S_32": Variant("S", 32),
    "ViT-B_8": Variant("B", 8),
    "ViT-B_16": Variant("B", 16),
    "ViT-B_32": Variant("B", 32),
    "ViT-L_16": Variant("L", 16),
    "ViT-L_32": Variant("L", 32),
    "ViT-H_14": Variant("H", 14),
    "ViT-S_16-gap-norep": Variant("S", 16, "gap"),
    "ViT-S_32-gap-norep": Variant("S", 32, "gap"),
    "ViT-B_16-gap-norep": Variant("B", 16, "gap"),
    "ViT-B_32-gap-norep": Variant("B", 32, "gap"),
    "R+ViT-Ti_16": Variant("Ti", 8, resnet_layers=()),
    "R26+ViT-S_32": Variant("S", 1, resnet_layers=(2, 2, 2, 2)),
    "R26+ViT-B_32": Variant("B", 1, resnet_layers=(2, 2, 2, 2)),
    "R50+ViT-B_16": Variant("B", 1, resnet_layers=(3, 4, 9)),
    "R50+ViT-L_32": Variant("L", 1, resnet_layers=(3, 4, 6, 3)),
}

MODEL_NAMES: tuple[str, ...] = tuple(VARIANTS)

_AUGREG_SHORT = re.compile(r"^(?:(R\d*)_)?(Ti|S|B|L|H)_(\d+)$")


def resolve_name(name: str) -> str:
    """Maps a published, AugReg short (`R26_S_32`) or AugReg file-stem name to a table key."""
    if name in VARIANTS:
        return name
    stem = name.rsplit("/", 1)[-1].removesuffix(".npz")
    if stem in VARIANTS:
        return stem
    match = _AUGREG_SHORT.match(stem.split("-", 1)[0])
    if match:
        resnet, width, patch = match.groups()
        candidate = f"{resnet}+ViT-{width}_{patch}" if resnet else f"ViT-{width}_{patch}"
        if candidate in VARIANTS:
            return candidate
    close = difflib.get_close_matches(name, MODEL_NAMES, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise KeyError(f"Unknown model name {name!r}.{hint} Known models: {', '.join(MODEL_NAMES)}.")


def get_config(name: str) -> ml_collections.ConfigDict:
    """The model config of a published variant (fields of `VisionTransformer`, no num_classes)."""
    key = resolve_name(name)
    variant = VARIANTS[key]
    width = WIDTHS[variant.width]
    config = ml_collections.ConfigDict()
    config.model_name = key
    config.patches = ml_collections.ConfigDict({"size": (variant.patch, variant.patch)})
    config.hidden_size = width.hidden_size
    config.transformer = ml_collections.ConfigDict(
        {
            "num_layers": width.num_layers,
            "mlp_dim": width.mlp_dim,
            "num_heads": width.num_heads,
            "dropout_rate": width.dropout_rate,
            "attention_dropout_rate": 0.0,
        }
    )
    config.resnet = (
        None
        if variant.resnet_layers is None
        else ml_collections.ConfigDict({"num_layers": variant.resnet_layers, "width_factor": 1})
    )
    config.representation_size = None
    config.classifier = variant.classifier
    return config


def get_model(name: str, num_classes: int | None = 1000, **overrides: Any) -> VisionTransformer:
    """Builds a registered model; `overrides` replace config fields (dicts update sub-configs).

    Example: `get_model('ViT-B_16', num_classes=10, dtype=jnp.bfloat16,
    transformer={'dropout_rate': 0.1})`.
    """
    config = get_config(name).to_dict()
    for field, value in overrides.items():
        if isinstance(value, dict) and isinstance(config.get(field), dict):
            unknown = set(value) - set(config[field])
            if unknown:
                raise ValueError(f"Unknown {field} fields {sorted(unknown)} for {name}.")
            config[field] = {**config[field], **value}
        else:
            config[field] = value
    return build_model(config, num_classes=num_classes)


def build_model(config: Any, num_classes: int | None) -> VisionTransformer:
    """A `VisionTransformer` from a model config (dict or ConfigDict), with frozen sub-configs."""
    config = dict(config.to_dict() if hasattr(config, "to_dict") else config)
    for field in ("patches", "transformer", "resnet"):
        if config.get(field) is not None:
            config[field] = ml_collections.FrozenConfigDict(dict(config[field]))
    config.setdefault("num_classes", num_classes)
    check_outputs(config.get("matmul_outputs", "auto"))  # Before anything is traced.
    check_implementation(config.get("attention_implementation", "auto"))
    check_library(config.get("matmul_library", "auto"), config.get("dtype", "float32"))
    known = set(VisionTransformer.__dataclass_fields__) - {"parent", "name"}
    unknown = set(config) - known
    if unknown:
        raise ValueError(
            f"Unknown model config fields {sorted(unknown)}; VisionTransformer takes "
            f"{sorted(known)}."
        )
    return VisionTransformer(**config)
