"""Serving artifacts: a checkpoint as a serialized `jax.export` (StableHLO) function.

`export_checkpoint(ckpt, out)` writes the model's forward pass `images [b, H, W, 3] float32 in
[-1, 1] -> logits [b, C] float32` with a symbolic batch size and the weights embedded, lowered
for CPU, CUDA and TPU, plus `out.json` (input size, preprocessing, value range, class names).
`python -m vit_jax.export` is its command line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from vit_jax.models.preprocessing import EvalPreprocessing

DEFAULT_PLATFORMS = ("cpu", "cuda", "tpu")
KNOWN_PLATFORMS = ("cpu", "cuda", "rocm", "tpu")
MAX_EMBEDDED_BYTES = 3 << 29  # 1.5 GiB: serialized modules are capped at 2 GiB.
PARAMS_SUFFIX = ".params.npz"
INFO_SUFFIX = ".json"


def export_model(
    params: Mapping[str, Any],
    config: Any,
    num_classes: int | None,
    image_size: tuple[int, int],
    *,
    platforms: Sequence[str] = DEFAULT_PLATFORMS,
    params_as_input: bool = False,
) -> jax.export.Exported:
    """The model's inference function, exported with a symbolic batch dimension.

    `params` is the model's nested tree. With `params_as_input`, the function takes the flat
    `{'/'-joined key: array}` dict first, else the weights are constants of the module. The
    "auto" attention, matmul outputs and matmul library become choices for `platforms`,
    whatever this host is (`backend_tuning.model_fields_compiled_for`).
    """
    from vit_jax.checkpoint import layout
    from vit_jax.models import backend_tuning, build_model

    # Before the model is built, which would build a CPU custom call only to refuse it.
    backend_tuning.check_portable(config.get("matmul_library", "auto"), platforms)
    model = build_model(config, num_classes)
    fields = dict(
        attention_implementation=model.attention_implementation,
        matmul_outputs=model.matmul_outputs,
        matmul_library=model.matmul_library,
    )
    model = model.clone(**backend_tuning.model_fields_compiled_for(fields, platforms))
    (batch,) = jax.export.symbolic_shape("b")
    images = jax.ShapeDtypeStruct((batch, *image_size, 3), jnp.float32)
    if params_as_input:
        flat = layout.flatten(params)
        specs = {k: jax.ShapeDtypeStruct(np.shape(v), np.asarray(v).dtype) for k, v in flat.items()}
        forward = lambda p, x: model.apply({"params": layout.unflatten(p)}, x)
        return jax.export.export(jax.jit(forward), platforms=platforms)(specs, images)
    forward = lambda x: model.apply({"params": params}, x)
    return jax.export.export(jax.jit(forward), platforms=platforms)(images)


def load(path: str | os.PathLike) -> jax.export.Exported:
    """The exported function saved at `path`."""
    with open(path, "rb") as f:
        return jax.export.deserialize(bytearray(f.read()))


def export_checkpoint(
    ckpt_path: str,
    out: str,
    *,
    platforms: Sequence[str] = DEFAULT_PLATFORMS,
    params_as_input: bool = False,
    labels: Sequence[str] | None = None,
) -> list[str]:
    """Exports the checkpoint at `ckpt_path` to `out` (+ `.json`); returns the written paths."""
    from vit_jax.checkpoint import layout
    from vit_jax.convert import ConversionError, describe, open_checkpoint

    ckpt = open_checkpoint(ckpt_path)
    model = describe(ckpt)
    flat = {key: ckpt.tensors.get(key) for key in ckpt.tensors.shapes()}
    size = sum(a.nbytes for a in flat.values())
    if size > MAX_EMBEDDED_BYTES and not params_as_input:
        raise ConversionError(
            f"{ckpt_path} has {size / 2**30:.1f} GiB of weights, more than one serialized module "
            "holds. Pass --params-as-input to export call(params, images) and write the weights "
            f"to {out}{PARAMS_SUFFIX}."
        )
    labels = list(labels) if labels is not None else ckpt.labels
    exported = export_model(
        layout.unflatten(flat),
        model.config,
        model.num_classes,
        model.image_size,
        platforms=platforms,
        params_as_input=params_as_input,
    )
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "wb") as f:
        f.write(exported.serialize())
    written = [out]
    if params_as_input:
        np.savez(out + PARAMS_SUFFIX, **flat)
        written.append(out + PARAMS_SUFFIX)
    info = {
        "input": {
            "shape": ["batch", *model.image_size, 3],
            "dtype": "float32",
            "layout": "NHWC, RGB",
            "value_range": [-1.0, 1.0],
            # How images become such inputs: the evaluation pipeline's own definition.
            "preprocessing": EvalPreprocessing(tuple(model.image_size)).describe(),
        },
        "output": {"shape": ["batch", model.num_classes or model.config.hidden_size]},
        "platforms": list(exported.platforms),
        "params_as_input": params_as_input,
        "model": model.config.get("model_name"),
        "labels": labels,
    }
    with open(out + INFO_SUFFIX, "w", encoding="utf-8") as f:
        json.dump(info, f, indent=2)
        f.write("\n")
    return [*written, out + INFO_SUFFIX]
