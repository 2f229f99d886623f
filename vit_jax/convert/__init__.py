"""Conversion between the published `.npz` layout and PyTorch (HF transformers, timm).

    python -m vit_jax.convert ViT-B_16.npz out/hf --to hf      # ViTForImageClassification
    python -m vit_jax.convert ViT-B_16.npz out/timm --to timm  # timm Hub layout
    python -m vit_jax.convert out/hf ViT-B_16-again.npz --to npz

or from Python: `convert(src, dst, to='hf')`. The model config is inferred from the weights;
tensors are converted one at a time, so a ViT-H/14 never needs two copies in memory.
"""

from __future__ import annotations

from collections.abc import Sequence

from vit_jax.convert.errors import ConversionError
from vit_jax.convert.sources import Checkpoint, open_checkpoint, read_labels
from vit_jax.convert.targets import TARGETS, WRITERS, Model, describe, torch_state_dict
from vit_jax.convert.timm import numerics_notes as _timm_notes


def convert(
    src: str,
    dst: str,
    to: str,
    *,
    labels: Sequence[str] | None = None,
    num_heads: int | None = None,
    progress: bool = True,
) -> tuple[list[str], list[str]]:
    """Converts the checkpoint `src` to format `to` at `dst`; returns (written paths, notes).

    `labels` (class names in class order) override names read from the source. `num_heads` is
    only needed for timm state dicts of non-standard width without a config.json. Notes say
    where the target's numerics necessarily differ from ours.
    """
    if to not in TARGETS:
        raise ConversionError(f"Unknown target {to!r}; choose one of {', '.join(TARGETS)}.")
    ckpt = open_checkpoint(src, num_heads=num_heads)
    model = describe(ckpt)
    written = WRITERS[to](ckpt, dst, model=model, labels=labels, progress=progress)
    notes = list(ckpt.notes) + (_timm_notes(model.config) if to == "timm" else [])
    return written, notes


__all__ = [
    "TARGETS",
    "Checkpoint",
    "ConversionError",
    "Model",
    "convert",
    "describe",
    "open_checkpoint",
    "read_labels",
    "torch_state_dict",
]
