"""`python -m vit_jax.convert SRC DST --to {hf,timm,npz}`."""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Sequence

from vit_jax import errors

_EPILOG = """\
SRC is a published-layout .npz (local path, gs:// or https://), a training workdir, an HF
transformers model directory (config.json + model.safetensors) or a timm state dict
(.safetensors/.pth/.bin, or a directory with timm's config.json). The model is inferred from
the weights.

--to hf    DST directory for transformers.ViTForImageClassification.from_pretrained(DST)
           (class-token ViTs without pre-logits only).
--to timm  DST directory with model.safetensors and config.json (architecture, model_args):
           timm.create_model('local-dir:DST', pretrained=True). Token and GAP ViTs, hybrids.
--to npz   DST .npz in the published layout, for vit_jax (fine-tuning, inference). Class
           names, when the source has them, go to DST with .labels.txt for .npz.

Class names for --to hf/timm come from --labels, else from SRC's .labels.txt sibling.
"""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m vit_jax.convert",
        description="Convert ViT checkpoints between vit_jax (.npz), HF transformers and timm.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("src", metavar="SRC", help="checkpoint to read")
    parser.add_argument("dst", metavar="DST", help="where to write (see below)")
    parser.add_argument("--to", required=True, choices=("hf", "timm", "npz"), help="format")
    parser.add_argument("--labels", metavar="FILE", help="class names, one per line")
    parser.add_argument(
        "--num-heads",
        type=int,
        metavar="N",
        help="attention heads (only for timm state dicts of unusual width without config.json)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def _fail(message: str) -> int:
    return errors.report(message)


def main(argv: Sequence[str] | None = None) -> int:
    from vit_jax.cli import quiet

    quiet.for_command_line()  # Orbax narrates reading a workdir ("Metadata file does not exist").
    args = parse_args(argv)
    try:
        from vit_jax.checkpoint import CheckpointError
        from vit_jax.convert import ConversionError, convert, read_labels
    except ImportError as e:  # pragma: no cover - depends on the installation.
        return _fail(f"{e}. Install the conversion extra: pip install 'vit_jax[torch]'.")
    try:
        labels = read_labels(args.labels) if args.labels else None
        written, notes = convert(
            args.src,
            args.dst,
            args.to,
            labels=labels,
            num_heads=args.num_heads,
            progress=not args.quiet,
        )
    except (ConversionError, CheckpointError) as e:
        return _fail(str(e))
    except (FileNotFoundError, IsADirectoryError, PermissionError) as e:
        return _fail(f"{e.filename or e}: {e.strerror or e}.")
    except ImportError as e:
        return _fail(f"{e}. Install the conversion extra: pip install 'vit_jax[torch]'.")
    for note in notes:
        print(textwrap.fill(f"note: {note}", width=100), file=sys.stderr)
    for path in written:
        print(path)
    return 0
