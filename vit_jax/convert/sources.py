"""Opening any supported checkpoint as lazy published-layout tensors.

Accepted sources, told apart by their contents rather than flags:
- a published-layout `.npz` (local, `gs://`, `https://`), via `vit_jax.checkpoint.load`;
- a training workdir (Orbax checkpoints of the trainer);
- an HF transformers model directory (`config.json` with `model_type: vit` + weights);
- a timm state dict: a `.safetensors`/`.pth`/`.bin` file, or a directory in timm's Hub layout.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from vit_jax.convert import hf, timm
from vit_jax.convert.errors import ConversionError
from vit_jax.convert.rules import rules_from_torch
from vit_jax.convert.tensors import (
    FromTorch,
    InMemory,
    Renamed,
    SafetensorsFiles,
    Tensors,
    TorchFile,
)
from vit_jax.training import train_state

LABELS_SUFFIX = ".labels.txt"
_TORCH_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


@dataclasses.dataclass
class Checkpoint:
    """Published-layout tensors (the model's flat keys) and what else the source said."""

    tensors: Tensors
    kind: str  # 'npz', 'workdir', 'hf' or 'timm'.
    path: str
    labels: list[str] | None = None
    notes: list[str] = dataclasses.field(default_factory=list)


def read_labels(path: str) -> list[str]:
    """One class name per line, in class order."""
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if line.strip()]


def open_checkpoint(path: str, *, num_heads: int | None = None) -> Checkpoint:
    """The checkpoint at `path`, whatever its format (see the module docstring)."""
    path = os.fspath(path)
    if "://" in path or path.endswith(".npz"):
        return _open_npz(path)
    if os.path.isdir(path):
        # A training workdir also holds a config.json (the run's config): look for its
        # checkpoints first.
        if os.path.isdir(os.path.join(path, train_state.CHECKPOINT_DIR)):
            return _open_workdir(path)
        if os.path.exists(os.path.join(path, hf.CONFIG)):
            if timm.read_config(os.path.join(path, timm.CONFIG)) is not None:
                return _open_timm(_weights_in(path), num_heads)
            return _open_hf(path, num_heads)
        return _open_workdir(path)
    if not os.path.exists(path):
        raise ConversionError(
            f"{path} does not exist. Check the path (models on the Hugging Face Hub must be "
            "downloaded first: huggingface-cli download google/vit-base-patch16-224 "
            "--local-dir DIR)."
        )
    if path.endswith(_TORCH_SUFFIXES):
        return _open_torch_file(path, num_heads)
    raise ConversionError(
        f"{path} is not a checkpoint this tool reads. Pass a published-layout .npz, a training "
        "workdir, an HF transformers model directory (config.json + model.safetensors), or a "
        "timm state dict (.safetensors, .pth or .bin)."
    )


def _open_npz(path: str) -> Checkpoint:
    from vit_jax import checkpoint
    from vit_jax.checkpoint import layout

    params = checkpoint.load(path)
    labels_path = path.removesuffix(".npz") + LABELS_SUFFIX
    labels = read_labels(labels_path) if "://" not in path and os.path.exists(labels_path) else None
    return Checkpoint(InMemory(layout.flatten(params)), "npz", path, labels)


def _open_workdir(path: str) -> Checkpoint:
    from vit_jax.checkpoint import layout

    try:
        params = train_state.load_params(path)
    except FileNotFoundError as e:
        raise ConversionError(
            f"{path} is a directory without config.json and without training checkpoints. "
            "Pass a training workdir, an .npz, an HF model directory or a timm state dict."
        ) from e
    return Checkpoint(InMemory(layout.flatten(params)), "workdir", path)


def _weights_in(directory: str) -> str:
    for name in (timm.WEIGHTS, "pytorch_model.bin", "model.pth"):
        candidate = os.path.join(directory, name)
        if os.path.exists(candidate):
            return candidate
    raise ConversionError(f"{directory} has a timm config.json but no {timm.WEIGHTS}.")


def _torch_source(path: str) -> Tensors:
    if path.endswith(".safetensors"):
        return SafetensorsFiles([path])
    return TorchFile(path)


def _open_torch_file(path: str, num_heads: int | None) -> Checkpoint:
    """A bare weights file: timm's layout, or HF's (then the directory's config.json is needed)."""
    source = _torch_source(path)
    keys = list(source.shapes())
    if any(hf.canonical_key(k).startswith("vit.") for k in keys):
        directory = os.path.dirname(os.path.abspath(path))
        if os.path.exists(os.path.join(directory, hf.CONFIG)):
            return _open_hf(directory, num_heads)
        raise ConversionError(
            f"{path} holds HF transformers ViT weights, which need their config.json. Pass the "
            "model directory (config.json + weights) instead."
        )
    return _open_timm(path, num_heads, source)


def _open_hf(directory: str, num_heads: int | None) -> Checkpoint:
    config = hf.read_config(directory)
    files = hf.weight_files(directory)
    source: Tensors
    if files[0].endswith(".safetensors"):
        source = SafetensorsFiles(files)
    else:
        source = TorchFile(files[0])
    renames = {hf.canonical_key(key): key for key in source.shapes()}
    source = Renamed(source, renames)
    rules = rules_from_torch(list(renames), hf.TABLE, source=hf.NAME)
    heads = num_heads or config.get("num_attention_heads")
    if not heads:
        raise ConversionError(f"{directory}/config.json has no num_attention_heads.")
    tensors = FromTorch(source, rules, heads)
    notes = hf.numerics_notes(config)
    if "pre_logits/kernel" in tensors.shapes() and config.get("pooler_act", "tanh") != "tanh":
        raise ConversionError(
            f"{directory}: the pooler uses {config['pooler_act']!r}; the published pre-logits "
            "layer is tanh."
        )
    return Checkpoint(tensors, "hf", directory, hf.label_names(config), notes)


def _open_timm(path: str, num_heads: int | None, source: Tensors | None = None) -> Checkpoint:
    source = source or _torch_source(path)
    shapes = source.shapes()
    keys = list(shapes)
    if "blocks.0.attn.qkv.weight" not in shapes or "patch_embed.proj.weight" not in shapes:
        raise ConversionError(
            f"{path} is not a timm ViT state dict: it has no blocks.0.attn.qkv.weight or "
            f"patch_embed.proj.weight (its first keys: {', '.join(sorted(keys)[:5])})."
        )
    config = timm.read_config(os.path.join(os.path.dirname(os.path.abspath(path)), timm.CONFIG))
    args: dict[str, Any] = (config or {}).get("model_args", {})
    where = path if config is None else f"{path} (with config.json)"
    notes = timm.check_args(args, "cls_token" in shapes, where)
    width = shapes["patch_embed.proj.weight"][0]
    heads = num_heads or args.get("num_heads") or timm.default_heads(width)
    if not heads:
        raise ConversionError(
            f"{path}: the attention head count of a {width}-wide timm ViT is unknown (no "
            "config.json with model_args.num_heads next to it). Pass --num-heads."
        )
    rules = rules_from_torch(keys, timm.table(timm.has_stages(keys)), source=timm.NAME)
    labels = (config or {}).get("pretrained_cfg", {}).get("label_names")
    if isinstance(labels, dict):  # {class index: name}, possibly with string keys.
        labels = [labels[k] for k in sorted(labels, key=int)]
    return Checkpoint(FromTorch(source, rules, heads), "timm", path, labels, notes)
