"""Few-shot accuracy of a checkpoint from the command line.

    python -m vit_jax.fewshot --checkpoint ViT-B_16.npz --dataset cifar100 oxford_iiit_pet
    python -m vit_jax.fewshot --checkpoint ViT-digits.npz --dataset digits --shots 1 5 --json

Prints a table of test accuracies (dataset x shots), or with --json
`{"<dataset>": {"<shots>": accuracy}}`. The architecture and resolution come from the
checkpoint's shapes, so any published `.npz` (local, gs:// or https://) works; datasets are
the presets of `vit_jax.fewshot.PRESETS`, other prepared TFDS names, or image folders.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from vit_jax import checkpoint, data, errors
from vit_jax.cli import quiet
from vit_jax.errors import ConfigError
from vit_jax.fewshot.evaluator import PRESETS
from vit_jax.fewshot.published import evaluate_checkpoint
from vit_jax.fewshot.report import format_table

USER_ERRORS = (ConfigError, data.DataError, checkpoint.CheckpointError)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m vit_jax.fewshot",
        description=__doc__.split("\n\n", 1)[0],
        epilog=f"Presets: {', '.join(PRESETS)}.",
    )
    parser.add_argument("--checkpoint", required=True, help="A ViT .npz (local, gs://, https://).")
    parser.add_argument("--dataset", nargs="+", required=True, help="Dataset names or folders.")
    parser.add_argument("--shots", nargs="+", type=int, default=[1, 5, 10, 25])
    parser.add_argument("--seeds", type=int, default=3, help="Draws averaged per shot count.")
    parser.add_argument("--holdout", type=int, default=5, help="Held-out examples per class.")
    parser.add_argument("--batch", type=int, default=256, help="Images per forward pass.")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--tfds_data_dir", default=None, help="Where TFDS datasets are.")
    parser.add_argument("--json", action="store_true", help="Print JSON instead of a table.")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    quiet.for_command_line()
    args = parse_args(argv)
    try:
        results = evaluate_checkpoint(
            args.checkpoint,
            args.dataset,
            shots=args.shots,
            seeds=args.seeds,
            holdout=args.holdout,
            batch=args.batch,
            dtype=args.dtype,
            tfds_data_dir=args.tfds_data_dir,
        )
    except USER_ERRORS as e:
        return errors.report(e)
    if args.json:
        as_json = {name: {str(n): acc for n, acc in r.items()} for name, r in results.items()}
        print(json.dumps(as_json))
    else:
        print(format_table(results, args.shots))
    return 0
