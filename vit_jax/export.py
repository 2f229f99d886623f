"""Serving artifacts: a checkpoint as a serialized `jax.export` (StableHLO) function.

    python -m vit_jax.export ViT-B_16.npz vit_b16.jax.bin

writes `vit_b16.jax.bin`, the model's forward pass `images [b, H, W, 3] float32 in [-1, 1] ->
logits [b, C] float32` with a symbolic batch size and the weights embedded, lowered for CPU,
CUDA and TPU; and `vit_b16.jax.bin.json`, what a server needs to know (input size, value
range, class names). Running it needs only JAX, not this package:

    exported = jax.export.deserialize(open('vit_b16.jax.bin', 'rb').read())
    logits = exported.call(images)

Models above `MAX_EMBEDDED_BYTES` of weights (ViT-H/14) exceed what one serialized module holds;
`--params-as-input` then exports `call(params, images)` and writes the weights next to it as a
flat `.npz` (`exported.call(dict(np.load(path + '.params.npz')), images)`).
CKPT is anything `python -m vit_jax.convert` reads (published .npz, training workdir, HF or
timm weights).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from vit_jax import errors
from vit_jax.preprocessing import EvalPreprocessing

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
    `{'/'-joined key: array}` dict first, else the weights are constants of the module.
    """
    from vit_jax.checkpoint import layout
    from vit_jax.models import build_model

    model = build_model(config, num_classes)
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


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m vit_jax.export",
        description="Export a ViT checkpoint as a serialized jax.export (StableHLO) function.",
    )
    parser.add_argument("ckpt", metavar="CKPT", help="checkpoint (.npz, workdir, HF or timm)")
    parser.add_argument("out", metavar="OUT", help="file to write the artifact to")
    parser.add_argument(
        "--platforms",
        default=",".join(DEFAULT_PLATFORMS),
        help="comma-separated platforms to lower for (default: %(default)s)",
    )
    parser.add_argument(
        "--params-as-input",
        action="store_true",
        help=f"take the weights as an argument; write them to OUT{PARAMS_SUFFIX}",
    )
    parser.add_argument("--labels", metavar="FILE", help="class names, one per line")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    from vit_jax import quiet

    quiet.for_command_line()
    args = parse_args(argv)
    from vit_jax.checkpoint import CheckpointError
    from vit_jax.convert import ConversionError, read_labels

    platforms = tuple(p for p in args.platforms.split(",") if p)
    unknown = sorted(set(platforms) - set(KNOWN_PLATFORMS))
    if unknown or not platforms:
        return errors.report(
            f"unknown platforms {unknown or platforms}; choose from {', '.join(KNOWN_PLATFORMS)}."
        )
    try:
        labels = read_labels(args.labels) if args.labels else None
        written = export_checkpoint(
            args.ckpt,
            args.out,
            platforms=platforms,
            params_as_input=args.params_as_input,
            labels=labels,
        )
    except (ConversionError, CheckpointError) as e:
        return errors.report(e)
    except (FileNotFoundError, PermissionError) as e:
        return errors.report(f"{e.filename or e}: {e.strerror or e}.")
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
