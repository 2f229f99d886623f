"""Classify images with a ViT checkpoint, and draw where it looks (attention rollout).

    python -m vit_jax.infer --checkpoint ViT-B_16_imagenet2012.npz --image cat.jpg dog.png
    python -m vit_jax.infer --checkpoint CKPT --image https://.../cat.jpg --top_k 3 --json
    python -m vit_jax.infer --checkpoint CKPT --image cat.jpg --attention_map cat_rollout.png

The model config, class count and input resolution come from the checkpoint. Images of any
mode PIL reads (grayscale, RGBA, 16-bit, ...) are converted to RGB and resized to that
resolution with values in [-1, 1]. Probabilities are a softmax, or per-class sigmoids for
multi-label ImageNet-21k heads (21843 classes; override with --multi_label or
--no_multi_label).

This module is the command line; from Python (notebooks) use `vit_jax.inference`:

    from vit_jax import inference
    predictor = inference.Predictor.from_checkpoint('ViT-B_16_imagenet2012.npz')
    predictor.predict(['cat.jpg'], top_k=5)          # [[Prediction(index, label, prob), ...]]
    heatmap = predictor.attention_rollout('cat.jpg')  # [gh, gw]
    inference.attention_overlay([predictor.load('cat.jpg')], [heatmap])  # a matplotlib Figure
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

if __name__ == "__main__":  # First: huge pages for XLA:CPU's buffers (cli/huge_pages.py).
    from vit_jax.cli import huge_pages

    huge_pages.reexec_with_huge_pages("vit_jax.infer")

import jax.numpy as jnp

from vit_jax import errors
from vit_jax.checkpoint import CheckpointError
from vit_jax.cli import quiet
from vit_jax.inference import InferenceError, Prediction, Predictor
from vit_jax.inference.labels import AUTO, BUILTIN, INDICES
from vit_jax.inference.plots import attention_overlay, save_png

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m vit_jax.infer",
        description="Top-k classes of images under a ViT checkpoint, and attention-rollout maps.",
    )
    parser.add_argument(
        "--checkpoint", required=True, help=".npz file: local path, gs:// or https://"
    )
    parser.add_argument("--image", required=True, nargs="+", help="image paths or http(s) URLs")
    parser.add_argument("--top_k", type=int, default=5, help="classes to show per image")
    parser.add_argument(
        "--json",
        action="store_true",
        help='print one JSON list of {"image", "index", "label", "prob"} objects',
    )
    parser.add_argument(
        "--labels",
        default=AUTO,
        help=f"class names: {AUTO} (ImageNet names when the head has 1000 or 21843 classes), "
        f"{', '.join(BUILTIN)} (files shipped with tensorflow_datasets; ImageNet-1k names are "
        f"WordNet IDs), {INDICES}, or a text FILE/URL with one name per line",
    )
    head = parser.add_mutually_exclusive_group()
    head.add_argument(
        "--multi_label",
        dest="multi_label",
        action="store_true",
        default=None,
        help="sigmoid per class instead of softmax (default for 21843 classes, the ImageNet-21k "
        "heads)",
    )
    head.add_argument(
        "--no_multi_label", dest="multi_label", action="store_false", help="force softmax"
    )
    parser.add_argument(
        "--attention_map",
        metavar="OUT.png",
        help="write the attention rollout over each image (one row per image)",
    )
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32", help="compute dtype")
    parser.add_argument("--batch_size", type=int, default=8, help="images per forward pass")
    return parser.parse_args(argv)


def _describe(predictor: Predictor) -> str:
    config = predictor.config
    name = config.model_name or "unregistered architecture"
    height, width = predictor.image_size
    activation = "sigmoid (multi-label)" if predictor.multi_label else "softmax"
    labels = predictor.labels.source if predictor.labels else "none"
    return (
        f"{predictor.source}: {name}, {predictor.num_classes} classes, {width}x{height} input, "
        f"{activation}, labels: {labels}"
    )


def _print_text(names: Sequence[str], results: Sequence[Sequence[Prediction]]) -> None:
    for name, predictions in zip(names, results):
        print(name)
        for rank, p in enumerate(predictions, 1):
            shown = p.label if p.label == str(p.index) else f"{p.label}  (class {p.index})"
            print(f"  {rank:>2}. {p.prob:.4f}  {shown}")


def run(args: argparse.Namespace) -> None:
    """The CLI's work; raises InferenceError / CheckpointError for bad input."""
    if args.top_k < 1:
        raise InferenceError(f"--top_k must be at least 1; got {args.top_k}.")
    predictor = Predictor.from_checkpoint(
        args.checkpoint,
        labels=args.labels,
        multi_label=args.multi_label,
        dtype=DTYPES[args.dtype],
        batch_size=args.batch_size,
    )
    if predictor.labels is not None and predictor.labels.note:
        print(f"note: {predictor.labels.note}", file=sys.stderr)
    images = predictor.load_batch(args.image)  # [B, H, W, 3]; every image checked first.
    results = predictor.predict(images, top_k=args.top_k)
    if args.json:
        rows = [
            {"image": name, **p.to_dict()}
            for name, predictions in zip(args.image, results)
            for p in predictions
        ]
        print(json.dumps(rows, indent=2))
    else:
        print(_describe(predictor))
        _print_text(args.image, results)
    if args.attention_map:
        rollouts = predictor.attention_rollouts(images)  # [B, gh, gw]
        names = [os.path.basename(name.rstrip("/")) or name for name in args.image]
        figure = attention_overlay(list(images), list(rollouts), titles=names)
        try:
            path = save_png(figure, args.attention_map)
        except OSError as e:
            raise InferenceError(f"Cannot write {args.attention_map}: {e}.") from None
        print(f"wrote {path}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: 0 on success, 2 (and one message on stderr) for unusable input."""
    quiet.for_command_line()
    args = parse_args(argv)
    try:
        run(args)
    except (InferenceError, CheckpointError) as e:
        return errors.report(e)
    return 0


if __name__ == "__main__":
    sys.exit(main())
