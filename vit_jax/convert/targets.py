"""Writing a checkpoint as a published `.npz`, an HF transformers directory or a timm directory."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
import tqdm

from vit_jax.convert import hf, timm
from vit_jax.convert.errors import ConversionError
from vit_jax.convert.rules import Rule, rules_from_published
from vit_jax.convert.sources import LABELS_SUFFIX, Checkpoint
from vit_jax.convert.tensors import write_safetensors

TARGETS = ("hf", "timm", "npz")


@dataclasses.dataclass(frozen=True)
class Model:
    """What the weights say about the model: its config, class count and input resolution."""

    config: Any  # ml_collections.ConfigDict, as `vit_jax.checkpoint.infer_config` returns.
    num_classes: int | None
    image_size: tuple[int, int]


def describe(ckpt: Checkpoint) -> Model:
    """Infers the model from the tensors' shapes and checks every shape against that model."""
    from vit_jax import checkpoint
    from vit_jax.checkpoint import layout

    shapes = layout.unflatten(
        {
            key: jax.ShapeDtypeStruct(shape, ckpt.tensors.dtype(key))
            for key, shape in ckpt.tensors.shapes().items()
        }
    )
    try:
        config = checkpoint.infer_config(shapes)
        num_classes = checkpoint.infer_num_classes(shapes)
        image_size = tuple(checkpoint.infer_image_size(shapes, config))
    except (ValueError, KeyError) as e:
        raise ConversionError(f"{ckpt.path} is not a complete ViT checkpoint: {e}") from e
    checkpoint.build_checked(shapes, config, num_classes, image_size, source=ckpt.path)
    return Model(config, num_classes, image_size)


def _labels(ckpt: Checkpoint, labels: Sequence[str] | None) -> list[str] | None:
    return list(labels) if labels is not None else ckpt.labels


def write_npz(ckpt: Checkpoint, dst: str, *, progress: bool = True, **_: Any) -> list[str]:
    """The published layout; class names, when known, go to `<dst stem>.labels.txt`."""
    from vit_jax import checkpoint
    from vit_jax.checkpoint import layout

    if not dst.endswith(".npz"):
        raise ConversionError(f"--to npz writes a .npz file; {dst} does not end in .npz.")
    keys = list(ckpt.tensors.shapes())
    arrays = {
        key: ckpt.tensors.get(key) for key in tqdm.tqdm(keys, "Reading", disable=not progress)
    }
    checkpoint.save(layout.unflatten(arrays), dst)
    written = [dst]
    if ckpt.labels is not None:
        labels_path = dst.removesuffix(".npz") + LABELS_SUFFIX
        with open(labels_path, "w", encoding="utf-8") as f:
            f.writelines(f"{name}\n" for name in ckpt.labels)
        written.append(labels_path)
    return written


def _directory(dst: str) -> None:
    if os.path.isfile(dst):
        raise ConversionError(f"{dst} is a file; the output is a directory. Pass a directory path.")
    os.makedirs(dst, exist_ok=True)


def _write_json(path: str, content: dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(content, f, indent=2, ensure_ascii=False)
        f.write("\n")


def write_torch(
    to: str,
    ckpt: Checkpoint,
    dst: str,
    *,
    model: Model,
    labels: Sequence[str] | None = None,
    progress: bool = True,
) -> list[str]:
    """A directory in the `to` layout: `model.safetensors` (streamed) and `config.json`.

    'hf': a directory that `ViTForImageClassification.from_pretrained` loads as is, with HF's
    `preprocessor_config.json`; 'timm': timm's Hub layout.
    """
    fmt = hf if to == "hf" else timm
    reason = fmt.refusal(model.config)
    if reason:
        raise ConversionError(reason)
    config = fmt.config_json(
        model.config, model.num_classes, model.image_size, _labels(ckpt, labels)
    )
    rules = _torch_rules(ckpt, to, model)
    json_files = {fmt.CONFIG: config}
    if to == "hf":
        json_files[hf.PREPROCESSOR] = hf.preprocessor_json(model.image_size)

    _directory(dst)
    weights = os.path.join(dst, fmt.WEIGHTS)
    write_safetensors(weights, ckpt.tensors, rules, metadata={"format": "pt"}, progress=progress)
    paths = [weights]
    for name, content in json_files.items():
        paths.append(os.path.join(dst, name))
        _write_json(paths[-1], content)
    return paths


def _torch_rules(ckpt: Checkpoint, to: str, model: Model) -> list[Rule]:
    """How each tensor of `ckpt` is written in the `to` ('hf' or 'timm') layout."""
    if to == "hf":
        return rules_from_published(ckpt.tensors.shapes(), hf.TABLE, target=hf.NAME)
    table = timm.table(_has_stages(model))
    return rules_from_published(ckpt.tensors.shapes(), table, target=timm.NAME)


def _has_stages(model: Model) -> bool:
    """Whether a hybrid's stem has ResNet stages (timm lays those out differently)."""
    return model.config.resnet is not None and len(model.config.resnet.num_layers) > 0


WRITERS = {
    "npz": write_npz,
    "hf": functools.partial(write_torch, "hf"),
    "timm": functools.partial(write_torch, "timm"),
}


def torch_state_dict(ckpt: Checkpoint, to: str, model: Model) -> dict[str, np.ndarray]:
    """The HF or timm state dict as numpy arrays in memory: `write_torch`'s tensors without the
    files, for a PyTorch model built in the same process (README, "Conversion and export")."""
    return {
        rule.torch: np.ascontiguousarray(
            rule.to_torch([ckpt.tensors.get(key) for key in rule.published])
        )
        for rule in _torch_rules(ckpt, to, model)
    }
