"""Hugging Face transformers' `ViTForImageClassification` layout, both ways.

Written in the on-disk key layout that every transformers version since 4.x loads
(`vit.encoder.layer.{i}.attention.attention.query.weight`, ...; transformers 5 renames these
to `q_proj`/`o_proj`/`mlp.fc1` in memory and back when saving). The config makes the numerics
match ours: tanh-GELU (`gelu_pytorch_tanh`), LayerNorm epsilon 1e-6.

HF's class pools the class token with a plain linear head, so GAP models, pre-logits layers
and ResNet hybrids are refused (timm holds the first and last, `.npz` all three). A `ViTModel`
checkpoint's pooler (dense + tanh on the class token) is the published pre-logits layer and
converts to `pre_logits` on the way back.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from typing import Any

from vit_jax.convert.errors import ConversionError
from vit_jax.convert.rules import ATTN, BLOCK, CONV, DENSE, HEADS_BIAS, HEADS_IN, HEADS_OUT, Entry
from vit_jax.models.preprocessing import EvalPreprocessing

NAME = "HF transformers"  # In messages.
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
PREPROCESSOR = "preprocessor_config.json"
TANH_GELU = ("gelu_pytorch_tanh", "gelu_new", "gelu_fast", "gelu_python_tanh")
LAYER_NORM_EPS = 1e-6

_LAYER = "vit.encoder.layer.{i}."

TABLE: tuple[Entry, ...] = (
    Entry("cls", "vit.embeddings.cls_token"),
    Entry("Transformer/posembed_input/pos_embedding", "vit.embeddings.position_embeddings"),
    Entry("embedding/kernel", "vit.embeddings.patch_embeddings.projection.weight", CONV),
    Entry("embedding/bias", "vit.embeddings.patch_embeddings.projection.bias"),
    Entry(BLOCK + "LayerNorm_0/scale", _LAYER + "layernorm_before.weight"),
    Entry(BLOCK + "LayerNorm_0/bias", _LAYER + "layernorm_before.bias"),
    *(
        entry
        for name in ("query", "key", "value")
        for entry in (
            Entry(ATTN + f"{name}/kernel", _LAYER + f"attention.attention.{name}.weight", HEADS_IN),
            Entry(ATTN + f"{name}/bias", _LAYER + f"attention.attention.{name}.bias", HEADS_BIAS),
        )
    ),
    Entry(ATTN + "out/kernel", _LAYER + "attention.output.dense.weight", HEADS_OUT),
    Entry(ATTN + "out/bias", _LAYER + "attention.output.dense.bias"),
    Entry(BLOCK + "LayerNorm_2/scale", _LAYER + "layernorm_after.weight"),
    Entry(BLOCK + "LayerNorm_2/bias", _LAYER + "layernorm_after.bias"),
    Entry(BLOCK + "MlpBlock_3/Dense_0/kernel", _LAYER + "intermediate.dense.weight", DENSE),
    Entry(BLOCK + "MlpBlock_3/Dense_0/bias", _LAYER + "intermediate.dense.bias"),
    Entry(BLOCK + "MlpBlock_3/Dense_1/kernel", _LAYER + "output.dense.weight", DENSE),
    Entry(BLOCK + "MlpBlock_3/Dense_1/bias", _LAYER + "output.dense.bias"),
    Entry("Transformer/encoder_norm/scale", "vit.layernorm.weight"),
    Entry("Transformer/encoder_norm/bias", "vit.layernorm.bias"),
    Entry("pre_logits/kernel", "vit.pooler.dense.weight", DENSE),
    Entry("pre_logits/bias", "vit.pooler.dense.bias"),
    Entry("head/kernel", "classifier.weight", DENSE),
    Entry("head/bias", "classifier.bias"),
)

# transformers 5's in-memory names (and a `ViTModel`'s unprefixed ones) -> the on-disk layout.
_ALIASES = (
    (re.compile(r"^(embeddings|encoder|layernorm|pooler|layers)\."), r"vit.\1."),
    (re.compile(r"^vit\.layers\.(\d+)\."), r"vit.encoder.layer.\1."),
    (re.compile(r"\.attention\.([qkv])_proj\."), lambda m: f".attention.attention.{_QKV[m[1]]}."),
    (re.compile(r"\.attention\.o_proj\."), ".attention.output.dense."),
    (re.compile(r"\.mlp\.fc1\."), ".intermediate.dense."),
    (re.compile(r"\.mlp\.fc2\."), ".output.dense."),
)
_QKV = {"q": "query", "k": "key", "v": "value"}


def canonical_key(key: str) -> str:
    """A HF ViT parameter name in the on-disk (transformers 4) layout."""
    for pattern, replacement in _ALIASES:
        key = pattern.sub(replacement, key)
    return key


def refusal(config: Any) -> str | None:
    """Why HF's `ViTForImageClassification` cannot hold this model, or None if it can."""
    if config.resnet is not None:
        what, where = "a ResNet hybrid (HF's ViT has no convolutional stem)", "timm or npz"
    elif config.classifier != "token":
        what = f"a '{config.classifier}' classifier (HF's ViT always pools the class token)"
        where = "timm or npz" if config.classifier == "gap" else "npz"
    elif config.representation_size is not None:
        what = "a pre-logits layer (HF's ViTForImageClassification has a single linear head)"
        where = "npz"
    else:
        return None
    return (
        f"Cannot convert to HF transformers: this checkpoint is {what}. "
        f"Use --to {where.replace(' or ', ' or --to ')} instead."
    )


def config_json(
    config: Any, num_classes: int | None, image_size: tuple[int, int], labels: Sequence[str] | None
) -> dict[str, Any]:
    """The `config.json` of a `ViTForImageClassification` with our numerics."""
    num_classes = num_classes or 0
    if labels is not None and len(labels) != num_classes:
        raise ConversionError(
            f"The label file has {len(labels)} names but the model has {num_classes} classes. "
            "Pass a file with one label per line, in class order."
        )
    names = list(labels) if labels is not None else [f"LABEL_{i}" for i in range(num_classes)]
    patch = tuple(config.patches.size)
    return {
        "architectures": ["ViTForImageClassification"],
        "model_type": "vit",
        "hidden_size": config.hidden_size,
        "num_hidden_layers": config.transformer.num_layers,
        "num_attention_heads": config.transformer.num_heads,
        "intermediate_size": config.transformer.mlp_dim,
        "hidden_act": "gelu_pytorch_tanh",
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "layer_norm_eps": LAYER_NORM_EPS,
        "image_size": image_size[0] if image_size[0] == image_size[1] else list(image_size),
        "patch_size": patch[0] if patch[0] == patch[1] else list(patch),
        "num_channels": 3,
        "qkv_bias": True,
        "initializer_range": 0.02,
        "id2label": {str(i): name for i, name in enumerate(names)},
        "label2id": {name: i for i, name in enumerate(names)},
    }


def preprocessor_json(image_size: tuple[int, int]) -> dict[str, Any]:
    """HF's image processor for our evaluation preprocessing at the model's resolution."""
    return EvalPreprocessing(tuple(image_size)).hf_image_processor()


def read_config(directory: str) -> dict[str, Any]:
    path = os.path.join(directory, CONFIG)
    with open(path) as f:
        config = json.load(f)
    model_type = config.get("model_type")
    if model_type != "vit":
        raise ConversionError(
            f"{path} describes a '{model_type}' model; only HF 'vit' models (ViTModel, "
            "ViTForImageClassification) convert. DeiT, BEiT, ViT-hybrid and the like differ "
            "from the published ViT."
        )
    if not config.get("qkv_bias", True) or config.get("num_channels", 3) != 3:
        raise ConversionError(
            f"{path}: only ViTs with query/key/value biases and 3 input channels convert."
        )
    return config


def numerics_notes(config: dict[str, Any]) -> list[str]:
    """Differences between the HF model's numerics and ours that conversion cannot remove."""
    notes = []
    act = config.get("hidden_act", "gelu")
    if act not in TANH_GELU:
        notes.append(
            f"the HF model uses hidden_act={act!r}; ours uses tanh-GELU (as the published "
            "models were trained), so logits differ slightly from HF's."
        )
    eps = config.get("layer_norm_eps", 1e-12)
    if eps != LAYER_NORM_EPS:
        notes.append(f"the HF model uses layer_norm_eps={eps}; ours uses {LAYER_NORM_EPS}.")
    return notes


def label_names(config: dict[str, Any]) -> list[str] | None:
    """Class names from `id2label`, or None when they are HF's placeholders (`LABEL_0`, ...)."""
    id2label = config.get("id2label") or {}
    names = [id2label.get(str(i), id2label.get(i)) for i in range(len(id2label))]
    if not names or any(n is None for n in names):
        return None
    if all(name == f"LABEL_{i}" for i, name in enumerate(names)):
        return None
    return [str(n) for n in names]


def weight_files(directory: str) -> list[str]:
    """The weight files of an HF model directory (one file, or the shards of an index)."""
    index = os.path.join(directory, WEIGHTS + ".index.json")
    if os.path.exists(index):
        with open(index) as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
        return [os.path.join(directory, shard) for shard in shards]
    for name in (WEIGHTS, "pytorch_model.bin"):
        if os.path.exists(os.path.join(directory, name)):
            return [os.path.join(directory, name)]
    raise ConversionError(
        f"{directory} has a config.json but no {WEIGHTS} or pytorch_model.bin. Download the "
        "weights too (huggingface-cli download MODEL --local-dir DIR)."
    )
