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
import sys
from collections.abc import Sequence

from vit_jax import errors
from vit_jax.convert.export import (
    DEFAULT_PLATFORMS,
    KNOWN_PLATFORMS,
    PARAMS_SUFFIX,
    export_checkpoint,
)


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
    from vit_jax.cli import quiet

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
