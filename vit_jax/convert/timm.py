"""timm's `VisionTransformer` layout (`vit_*`, hybrids `vit_*_r50_*`, `vit_*_r26_*`), both ways.

Keys follow timm's modules: a fused `blocks.{i}.attn.qkv` Linear, OIHW convolutions, and for
hybrids the `ResNetV2` backbone under `patch_embed.backbone` (`stem.conv`, `stem.norm`,
`stages.{s}.blocks.{u}.conv{1,2,3}/norm{1,2,3}/downsample`); a root-only stem (R+ViT-Ti/16)
is the bare `Sequential` (`patch_embed.backbone.conv`, `.norm`).

The output is a directory in timm's Hub layout: `model.safetensors` plus `config.json` with
`architecture` (a registered timm model) and `model_args` (its creation arguments), so

    model = timm.create_model('local-dir:DST', pretrained=True)  # recent timm; any timm:
    cfg = json.load(open('DST/config.json'))
    model = timm.create_model(cfg['architecture'], **cfg['model_args'])
    model.load_state_dict(safetensors.torch.load_file('DST/model.safetensors'))

The arguments reproduce our numerics: `act_layer='gelu_tanh'`, and for GAP models
`global_pool='avg', class_token=False, fc_norm=False` (the final LayerNorm before pooling, as
in the published GAP models). Pre-logits layers are refused: timm's ViT dropped them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from vit_jax.convert.errors import ConversionError
from vit_jax.convert.rules import ATTN, BLOCK, CONV, DENSE, HEADS_BIAS, HEADS_IN, HEADS_OUT, Entry
from vit_jax.models import WIDTHS
from vit_jax.models.preprocessing import EvalPreprocessing

NAME = "timm"  # In messages.
WEIGHTS = "model.safetensors"
CONFIG = "config.json"

_QKV = tuple(ATTN + name for name in ("query", "key", "value"))

_TRANSFORMER: tuple[Entry, ...] = (
    Entry("cls", "cls_token"),
    Entry("Transformer/posembed_input/pos_embedding", "pos_embed"),
    Entry("embedding/kernel", "patch_embed.proj.weight", CONV),
    Entry("embedding/bias", "patch_embed.proj.bias"),
    Entry(BLOCK + "LayerNorm_0/scale", "blocks.{i}.norm1.weight"),
    Entry(BLOCK + "LayerNorm_0/bias", "blocks.{i}.norm1.bias"),
    Entry(tuple(f"{name}/kernel" for name in _QKV), "blocks.{i}.attn.qkv.weight", HEADS_IN),
    Entry(tuple(f"{name}/bias" for name in _QKV), "blocks.{i}.attn.qkv.bias", HEADS_BIAS),
    Entry(ATTN + "out/kernel", "blocks.{i}.attn.proj.weight", HEADS_OUT),
    Entry(ATTN + "out/bias", "blocks.{i}.attn.proj.bias"),
    Entry(BLOCK + "LayerNorm_2/scale", "blocks.{i}.norm2.weight"),
    Entry(BLOCK + "LayerNorm_2/bias", "blocks.{i}.norm2.bias"),
    Entry(BLOCK + "MlpBlock_3/Dense_0/kernel", "blocks.{i}.mlp.fc1.weight", DENSE),
    Entry(BLOCK + "MlpBlock_3/Dense_0/bias", "blocks.{i}.mlp.fc1.bias"),
    Entry(BLOCK + "MlpBlock_3/Dense_1/kernel", "blocks.{i}.mlp.fc2.weight", DENSE),
    Entry(BLOCK + "MlpBlock_3/Dense_1/bias", "blocks.{i}.mlp.fc2.bias"),
    Entry("Transformer/encoder_norm/scale", "norm.weight"),
    Entry("Transformer/encoder_norm/bias", "norm.bias"),
    Entry("head/kernel", "head.weight", DENSE),
    Entry("head/bias", "head.bias"),
)

_UNIT = "block{s}/unit{u}/"
_TIMM_BLOCK = "patch_embed.backbone.stages.{s-1}.blocks.{u-1}."


def _root(prefix: str) -> tuple[Entry, ...]:
    return (
        Entry("conv_root/kernel", prefix + "conv.weight", CONV),
        Entry("gn_root/scale", prefix + "norm.weight"),
        Entry("gn_root/bias", prefix + "norm.bias"),
    )


_STAGES: tuple[Entry, ...] = (
    *(
        entry
        for r in (1, 2, 3)
        for entry in (
            Entry(_UNIT + f"conv{r}/kernel", _TIMM_BLOCK + f"conv{r}.weight", CONV),
            Entry(_UNIT + f"gn{r}/scale", _TIMM_BLOCK + f"norm{r}.weight"),
            Entry(_UNIT + f"gn{r}/bias", _TIMM_BLOCK + f"norm{r}.bias"),
        )
    ),
    Entry(_UNIT + "conv_proj/kernel", _TIMM_BLOCK + "downsample.conv.weight", CONV),
    Entry(_UNIT + "gn_proj/scale", _TIMM_BLOCK + "downsample.norm.weight"),
    Entry(_UNIT + "gn_proj/bias", _TIMM_BLOCK + "downsample.norm.bias"),
)


def table(stages: bool) -> tuple[Entry, ...]:
    """The layout of a plain ViT, or of a hybrid with (`stages`) or without ResNet stages."""
    if stages:
        return _TRANSFORMER + _root("patch_embed.backbone.stem.") + _STAGES
    return _TRANSFORMER + _root("patch_embed.backbone.")


def has_stages(torch_keys: Sequence[str]) -> bool:
    return any(key.startswith("patch_embed.backbone.stem.") for key in torch_keys)


_SIZE_NAMES = {"Ti": "tiny", "S": "small", "B": "base", "L": "large", "H": "huge"}
# Registered plain ViTs, by (width, patch). Creation arguments override every dimension.
_PLAIN = {
    ("Ti", 16),
    ("S", 8),
    ("S", 16),
    ("S", 32),
    ("B", 8),
    ("B", 16),
    ("B", 32),
    ("L", 16),
    ("L", 32),
    ("H", 14),
}
# Registered hybrids, by ResNet stage depths: their backbone is fixed by the name.
_HYBRID = {
    (): "vit_{size}_r_s16_p8_224",
    (2, 2, 2, 2): "vit_{size}_r26_s32_224",
    (3, 4, 9): "vit_base_r50_s16_224",
    (3, 4, 6, 3): "vit_large_r50_s32_224",
}
_HYBRID_SIZES = {(): ("Ti", "S"), (2, 2, 2, 2): ("S", "B")}
GELU_TANH = "gelu_tanh"


def _width(config: Any) -> str | None:
    """The WIDTHS key whose transformer dimensions `config` has, or None."""
    for name, width in WIDTHS.items():
        if (width.hidden_size, width.mlp_dim, width.num_heads, width.num_layers) == (
            config.hidden_size,
            config.transformer.mlp_dim,
            config.transformer.num_heads,
            config.transformer.num_layers,
        ):
            return name
    return None


def refusal(config: Any) -> str | None:
    """Why timm's ViT cannot hold this model, or None if it can."""
    if config.representation_size is not None:
        return (
            "Cannot convert to timm: this checkpoint has a pre-logits layer, which timm's "
            "VisionTransformer no longer has (removed in timm 0.6). Use --to npz instead."
        )
    if config.classifier not in ("token", "gap"):
        return f"Cannot convert to timm: classifier '{config.classifier}' has no timm pooling."
    resnet = config.resnet
    if resnet is not None:
        layers = tuple(resnet.num_layers)
        if layers not in _HYBRID or resnet.width_factor != 1:
            known = ", ".join(str(k) for k in _HYBRID)
            return (
                f"Cannot convert to timm: no timm hybrid has a ResNet stem with stage depths "
                f"{layers} and width factor {resnet.width_factor} (timm's ViT hybrids have "
                f"depths {known} at width factor 1). Use --to npz instead."
            )
    return None


def architecture(config: Any) -> str:
    """A registered timm model name with this model's backbone."""
    width = _width(config)
    if config.resnet is not None:
        layers = tuple(config.resnet.num_layers)
        sizes = _HYBRID_SIZES.get(layers, ())
        size = width if width in sizes else (sizes[0] if sizes else None)
        return _HYBRID[layers].format(size=_SIZE_NAMES.get(size, ""))
    patch = config.patches.size[0]
    if (width, patch) in _PLAIN:
        return f"vit_{_SIZE_NAMES[width]}_patch{patch}_224"
    return "vit_base_patch16_224"  # The generic entry point; model_args set every dimension.


def model_args(config: Any, num_classes: int | None, image_size: tuple[int, int]) -> dict:
    """`timm.create_model` keyword arguments that rebuild this model exactly."""
    width, mlp_dim = config.hidden_size, config.transformer.mlp_dim
    mlp_ratio = mlp_dim / width
    if int(width * mlp_ratio) != mlp_dim:
        raise ConversionError(
            f"timm derives the MLP width as int(embed_dim * mlp_ratio), which cannot give "
            f"{mlp_dim} for embed_dim {width}. Use --to npz instead."
        )
    patch = tuple(config.patches.size)
    token = config.classifier == "token"
    return {
        "img_size": image_size[0] if image_size[0] == image_size[1] else list(image_size),
        "patch_size": patch[0] if patch[0] == patch[1] else list(patch),
        "embed_dim": width,
        "depth": config.transformer.num_layers,
        "num_heads": config.transformer.num_heads,
        "mlp_ratio": mlp_ratio,
        "num_classes": num_classes or 0,
        "global_pool": "token" if token else "avg",
        "class_token": token,
        "fc_norm": False,
        "act_layer": GELU_TANH,
    }


def config_json(
    config: Any, num_classes: int | None, image_size: tuple[int, int], labels: Sequence[str] | None
) -> dict[str, Any]:
    """timm's Hub `config.json` (read by `create_model('local-dir:...')`)."""
    if labels is not None and len(labels) != (num_classes or 0):
        raise ConversionError(
            f"The label file has {len(labels)} names but the model has {num_classes or 0} "
            "classes. Pass a file with one label per line, in class order."
        )
    args = model_args(config, num_classes, image_size)
    if config.resnet is None:
        first_conv = "patch_embed.proj"
    elif config.resnet.num_layers:
        first_conv = "patch_embed.backbone.stem.conv"
    else:
        first_conv = "patch_embed.backbone.conv"
    pretrained_cfg: dict[str, Any] = {
        **EvalPreprocessing(tuple(image_size)).timm_data_config(),
        "fixed_input_size": True,
        "num_classes": args["num_classes"],
        "first_conv": first_conv,
        "classifier": "head",
    }
    if labels is not None:
        pretrained_cfg["label_names"] = list(labels)
    return {
        "architecture": architecture(config),
        "num_classes": args["num_classes"],
        "num_features": config.hidden_size,
        "global_pool": args["global_pool"],
        "model_args": args,
        "pretrained_cfg": pretrained_cfg,
    }


def numerics_notes(config: Any) -> list[str]:
    """Where timm computes differently from us, whatever the weights."""
    if config.resnet is None:
        return []
    return [
        "timm's hybrid stem standardises convolution weights as (w - mean) / sqrt(var + 1e-8) "
        "and uses GroupNorm eps 1e-5, where the published models use (w - mean) / (std + 1e-5) "
        "and eps 1e-6; timm's logits differ slightly from ours."
    ]


def read_config(path: str) -> dict[str, Any] | None:
    """timm's `config.json` next to the weights, if there is one."""
    if not os.path.exists(path):
        return None
    with open(path) as f:
        config = json.load(f)
    return config if "architecture" in config else None


def check_args(args: dict[str, Any], has_class_token: bool, where: str) -> list[str]:
    """ConversionError for creation arguments our model cannot reproduce; notes for others."""
    pool = args.get("global_pool", "token" if has_class_token else "avg")
    problems = []
    if pool not in ("token", "avg") or (pool == "token") != has_class_token:
        problems.append(
            f"global_pool={pool!r} with class_token={has_class_token} (ours pools the class "
            "token, or averages all tokens of a model without one)"
        )
    if args.get("fc_norm"):
        problems.append("fc_norm=True (ours applies the final norm before pooling)")
    for name in ("no_embed_class", "pre_norm", "reg_tokens", "init_values", "qk_norm"):
        if args.get(name):
            problems.append(f"{name}={args[name]!r}")
    if args.get("qkv_bias") is False:
        problems.append("qkv_bias=False")
    if problems:
        raise ConversionError(
            f"{where}: the timm model was created with {'; '.join(problems)}, which the "
            "published ViT cannot represent."
        )
    act = args.get("act_layer", "gelu")
    if act != GELU_TANH:
        return [
            f"the timm model uses act_layer={act!r}; ours uses tanh-GELU (as the published "
            "models were trained), so logits differ slightly from timm's."
        ]
    return []


def default_heads(hidden_size: int) -> int | None:
    """The head count of the published width with this hidden size, if there is one."""
    heads = {width.hidden_size: width.num_heads for width in WIDTHS.values()}
    return heads.get(hidden_size)
