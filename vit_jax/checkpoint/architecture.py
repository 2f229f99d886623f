"""Recovering the model config, class count and image size from a parameter tree's shapes,
and checking the tree against the model they describe.

Works on arrays and on `jax.ShapeDtypeStruct`s (only `.shape` is read), per-layer or stacked
(`scan_layers`) encoder blocks:

    params = load(path)
    config = infer_config(params)                     # same fields as models.get_config
    num_classes = infer_num_classes(params)
    height, width = infer_image_size(params, config)  # resolution the embeddings were trained at
    model = build_checked(params, config, num_classes, (height, width), source=path)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from vit_jax.checkpoint import layout
from vit_jax.checkpoint.errors import CheckpointError
from vit_jax.checkpoint.posemb import grid_shape
from vit_jax.models import (
    MODEL_NAMES,
    TOKEN_CLASSIFIERS,
    VisionTransformer,
    build_model,
    get_config,
)
from vit_jax.models.encoder import NUMBERED_BLOCK, STACKED_BLOCK, block_name

_STAGE = re.compile(r"^block(\d+)$")
_UNIT = re.compile(r"^unit(\d+)$")
ROOT_WIDTH = 64  # Channels of the hybrid stem's root conv at width_factor 1.
ROOT_STRIDE = 4  # The stem's 7x7/2 conv and 3x3/2 max-pool.
_SHOWN = 5  # Offending keys named per kind of mismatch.


def _numbered(names: Any, pattern: re.Pattern[str]) -> list[int]:
    """The numbers of the names matching `pattern`, checked to run 0 or 1, 2, ... without gaps."""
    numbers = sorted(int(m.group(1)) for name in names if (m := pattern.match(name)))
    if numbers and numbers != list(range(numbers[0], numbers[0] + len(numbers))):
        raise ValueError(f"Numbered modules have gaps: {numbers}.")
    return numbers


def _encoder_blocks(encoder: Mapping[str, Any]) -> tuple[int, Mapping[str, Any]]:
    """`(num_layers, first block)`, for per-layer trees and `scan_layers` (stacked) trees."""
    if STACKED_BLOCK in encoder:  # One block whose leaves have a leading layer axis.
        stacked = encoder[STACKED_BLOCK]
        block = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), stacked)
        return jax.tree.leaves(stacked)[0].shape[0], block
    return len(_numbered(encoder, NUMBERED_BLOCK)), encoder[block_name(0)]


def _resnet(params: Mapping[str, Any]) -> ml_collections.ConfigDict | None:
    if "conv_root" not in params:
        return None
    stages = _numbered(params, _STAGE)
    num_layers = tuple(len(_numbered(params[f"block{s}"], _UNIT)) for s in stages)
    width_factor = params["conv_root"]["kernel"].shape[-1] / ROOT_WIDTH
    if width_factor == int(width_factor):
        width_factor = int(width_factor)
    return ml_collections.ConfigDict({"num_layers": num_layers, "width_factor": width_factor})


def _architecture(config: Any) -> tuple[Any, ...]:
    """The config fields that shapes determine (not dropout, not the model name)."""
    resnet = config["resnet"]
    return (
        tuple(config["patches"]["size"]),
        config["hidden_size"],
        config["transformer"]["num_layers"],
        config["transformer"]["mlp_dim"],
        config["transformer"]["num_heads"],
        None if resnet is None else (tuple(resnet["num_layers"]), resnet["width_factor"]),
        config["classifier"] in TOKEN_CLASSIFIERS,
    )


def infer_config(params: Mapping[str, Any]) -> ml_collections.ConfigDict:
    """The model config (fields of `models.get_config`) that `params` were made with.

    When the architecture matches a registered model, that model's config is returned (with its
    name and dropout rates) and `representation_size` set from `pre_logits`; otherwise
    `model_name` is None and dropout rates are 0. `classifier` is 'token' when there is a
    `cls` parameter, else 'gap'.
    """
    try:
        kernel = params["embedding"]["kernel"]  # [ph, pw, C, D]
        num_layers, block = _encoder_blocks(params["Transformer"])
        num_heads = block["MultiHeadDotProductAttention_1"]["query"]["kernel"].shape[1]
        mlp_dim = block["MlpBlock_3"]["Dense_0"]["kernel"].shape[-1]
    except KeyError as e:
        raise ValueError(f"Not a ViT parameter tree in the model's layout: no {e}.") from e

    config = ml_collections.ConfigDict()
    config.model_name = None
    config.patches = ml_collections.ConfigDict({"size": tuple(kernel.shape[:2])})
    config.hidden_size = kernel.shape[-1]
    config.transformer = ml_collections.ConfigDict(
        {
            "num_layers": num_layers,
            "mlp_dim": mlp_dim,
            "num_heads": num_heads,
            "dropout_rate": 0.0,
            "attention_dropout_rate": 0.0,
        }
    )
    config.resnet = _resnet(params)
    pre_logits = params.get("pre_logits")
    config.representation_size = None if pre_logits is None else pre_logits["kernel"].shape[-1]
    config.classifier = "token" if "cls" in params else "gap"

    for name in MODEL_NAMES:
        registered = get_config(name)
        if _architecture(registered) == _architecture(config):
            registered.representation_size = config.representation_size
            return registered
    return config


def infer_num_classes(params: Mapping[str, Any]) -> int | None:
    """Output classes of the `head` layer, or None for a headless tree."""
    return params["head"]["kernel"].shape[-1] if "head" in params else None


def patch_stride(config: Any) -> tuple[int, int]:
    """Input pixels per patch token along (height, width): patch size times the stem stride."""
    stem = 1
    resnet = config["resnet"]
    if resnet is not None:  # Every stage after the first halves the resolution.
        stem = ROOT_STRIDE * 2 ** max(len(resnet["num_layers"]) - 1, 0)
    patch_h, patch_w = config["patches"]["size"]
    return patch_h * stem, patch_w * stem


def infer_image_size(params: Mapping[str, Any], config: Any) -> tuple[int, int]:
    """`(height, width)` of the images the position embeddings were made for (square grid)."""
    num_tokens = params["Transformer"]["posembed_input"]["pos_embedding"].shape[1]
    grid_h, grid_w = grid_shape(num_tokens - (1 if "cls" in params else 0))
    stride_h, stride_w = patch_stride(config)
    return grid_h * stride_h, grid_w * stride_w


def check_params(params: Mapping[str, Any], expected: Mapping[str, Any], *, source: str) -> None:
    """Raises `CheckpointError` unless `params` has exactly the names and shapes of `expected`.

    The message names `source` and the first few missing, unexpected and mis-shaped arrays.
    """
    found, wanted = layout.flatten(params), layout.flatten(expected)
    missing = sorted(set(wanted) - set(found))
    extra = sorted(set(found) - set(wanted))
    mismatched = [
        f"{key} (expected {tuple(wanted[key].shape)}, found {tuple(found[key].shape)})"
        for key in sorted(set(found) & set(wanted))
        if tuple(found[key].shape) != tuple(wanted[key].shape)
    ]
    problems = [
        f"{len(items)} {kind}: {', '.join(items[:_SHOWN])}"
        + (f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else "")
        for kind, items in (
            ("missing arrays", missing),
            ("unexpected arrays", extra),
            ("shape mismatches", mismatched),
        )
        if items
    ]
    if problems:
        raise CheckpointError(
            f"{source} does not match the model: {'; '.join(problems)}. Build the model with the "
            "checkpoint's config: vit_jax.checkpoint.infer_config(vit_jax.checkpoint.load(path))."
        )


def build_checked(
    params: Mapping[str, Any],
    config: ml_collections.ConfigDict,
    num_classes: int | None,
    image_size: tuple[int, int],
    *,
    source: str,
    dtype: Any = jnp.float32,
) -> VisionTransformer:
    """The model of `config` (compute `dtype`), once `params` is checked to fit it exactly.

    `config`, `num_classes` and `image_size` are usually inferred from `params` (`infer_*`);
    building the model and comparing every name and shape (`check_params`, which raises
    `CheckpointError` naming `source`) catches what the inference cannot see. Only shapes are
    computed (`jax.eval_shape`): nothing is initialised.
    """
    model = build_model({**config.to_dict(), "dtype": dtype}, num_classes=num_classes)
    images = jax.ShapeDtypeStruct((1, *image_size, 3), jnp.float32)  # [1, H, W, 3]
    expected = jax.eval_shape(model.init, jax.random.key(0), images)["params"]
    check_params(params, expected, source=source)
    return model
