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
import sys
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from vit_jax import checkpoint, data, models, sharding
from vit_jax.errors import ConfigError
from vit_jax.fewshot.evaluator import PRESETS, FewShotEvaluator, Results, Settings

EXIT_USER_ERROR = 2  # As argparse uses for bad arguments.
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


def evaluate_checkpoint(args: argparse.Namespace) -> Results:
    """Loads `args.checkpoint` onto all devices and runs the evaluator on `args.dataset`."""
    params = checkpoint.load(args.checkpoint)
    try:
        config = checkpoint.infer_config(params)
        height, width = checkpoint.infer_image_size(params, config)
    except ValueError as e:
        raise checkpoint.CheckpointError(f"{args.checkpoint}: {e}") from None
    if height != width:
        raise checkpoint.CheckpointError(
            f"{args.checkpoint} was trained on {height}x{width} images; the few-shot "
            "pipeline reads square images only."
        )
    model = models.build_model(
        {**config.to_dict(), "dtype": jnp.dtype(args.dtype)},
        num_classes=checkpoint.infer_num_classes(params),
    )
    expected = jax.eval_shape(
        model.init, jax.random.key(0), jax.ShapeDtypeStruct((1, height, width, 3), jnp.float32)
    )["params"]
    checkpoint.check_params(params, expected, source=args.checkpoint)

    mesh = sharding.make_mesh({"data": -1, "fsdp": 1})
    shards = sharding.num_data_shards(mesh)
    data_config = data.default_config()
    data_config.tfds_data_dir = args.tfds_data_dir
    data_config.batch_eval = max(args.batch // shards, 1) * shards  # Whole per-device batches.
    param_shardings = sharding.fsdp_shardings(params, mesh)
    params = jax.device_put(params, param_shardings)
    settings = Settings(tuple(args.dataset), tuple(args.shots), args.seeds, args.holdout)
    evaluator = FewShotEvaluator(settings, data_config, mesh, model, param_shardings, height)
    return evaluator.evaluate(params)


def format_table(results: Results, shots: Sequence[int]) -> str:
    """Datasets as rows, shot counts as columns, accuracies in percent ('-': skipped)."""
    width = max([len("dataset"), *map(len, results)])
    header = f"{'dataset':<{width}}" + "".join(f"{f'{n}-shot':>9}" for n in shots)
    rows = [
        f"{name:<{width}}"
        + "".join(f"{f'{per_shot[n]:.1%}' if n in per_shot else '-':>9}" for n in shots)
        for name, per_shot in results.items()
    ]
    return "\n".join([header, *rows])


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        results = evaluate_checkpoint(args)
    except USER_ERRORS as e:
        print(f"Error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    if args.json:
        print(
            json.dumps({name: {str(n): acc for n, acc in r.items()} for name, r in results.items()})
        )
    else:
        print(format_table(results, args.shots))
    return 0
