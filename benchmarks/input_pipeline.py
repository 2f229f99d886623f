"""Training input pipeline img/s per CPU core at 224 and 384, next to the model's consumption.

    python benchmarks/input_pipeline.py            # table
    python benchmarks/input_pipeline.py --json     # one JSON object
    python benchmarks/input_pipeline.py --model none --images 128

Runs offline: it writes ImageNet-sized JPEGs (500x375) into a temporary image folder,
prepares it like any dataset and times `pipeline.train_dataset` (decode, Inception crop,
flip, value range, one-hot, batching) on every core. The model column times jitted
forward+backward steps of `vit_jax.models.get_model(--model)` on this machine's devices;
`ratio` = pipeline img/s / model img/s: below 1 the input pipeline bounds training.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The fused op decodes only the crop window of each JPEG; "default" is the paper's string.
OPS = {
    "default": "decode|inception_crop({crop})|flip_lr|value_range(-1, 1)|onehot(10)",
    "fused": "decode_jpeg_and_inception_crop({crop})|flip_lr|value_range(-1, 1)|onehot(10)",
}


def write_jpegs(root: str, num_images: int, seed: int = 0) -> None:
    """Smooth images with noise (realistic JPEG sizes), 10 classes, under root/train/."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:375, 0:500]
    for i in range(num_images):
        cls_dir = os.path.join(root, "train", f"class{i % 10}")
        os.makedirs(cls_dir, exist_ok=True)
        phase = rng.uniform(0, 6.28, 3)
        base = [127 + 100 * np.sin(xx / (20 + 7 * c) + yy / 31 + phase[c]) for c in range(3)]
        pixels = np.stack(base, -1) + rng.normal(0, 12, (375, 500, 3))
        buf = io.BytesIO()
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
        with open(os.path.join(cls_dir, f"{i}.jpg"), "wb") as f:
            f.write(buf.getvalue())


def pipeline_rate(root: str, data_dir: str, crop: int, ops: str, batch: int, steps: int) -> float:
    """Images per second out of the training tf.data pipeline (all cores)."""
    from vit_jax import data
    from vit_jax.data import pipeline
    from vit_jax.data.info import resolve_settings

    cfg = data.default_config()
    cfg.dataset, cfg.tfds_data_dir, cfg.batch = root, data_dir, batch
    cfg.shuffle_buffer = 1_000
    cfg.pp.crop, cfg.pp.train, cfg.pp.train_ops = crop, "train", ops.format(crop=crop)
    settings = resolve_settings(cfg)
    ds = pipeline.train_dataset(settings, cfg, local_batch=batch, shard_index=0, shard_count=1)
    it = iter(ds)
    for _ in range(3):  # Warm-up: graph setup and the shuffle buffer's first fill.
        next(it)
    start = time.perf_counter()
    for _ in range(steps):
        next(it)
    return steps * batch / (time.perf_counter() - start)


def model_rate(name: str, crop: int, batch: int, steps: int) -> float | None:
    """Images per second through jitted training steps (forward + backward + SGD update)."""
    try:
        import jax
        import jax.numpy as jnp
        import optax

        from vit_jax.models import get_model
    except ImportError as e:
        print(f"note: model column skipped ({e})", file=sys.stderr)
        return None
    model = get_model(name, num_classes=10)
    images = jnp.zeros((batch, crop, crop, 3), jnp.float32)
    labels = jax.nn.one_hot(jnp.arange(batch) % 10, 10)
    params = jax.jit(lambda: model.init(jax.random.key(0), images))()

    @jax.jit
    def step(params, key):
        def loss(p):
            logits = model.apply(p, images, train=True, rngs={"dropout": key})
            return optax.softmax_cross_entropy(logits, labels).mean()

        grads = jax.grad(loss)(params)
        return jax.tree.map(lambda p, g: p - 1e-3 * g, params, grads)

    params = jax.block_until_ready(step(params, jax.random.key(1)))  # Compile.
    start = time.perf_counter()
    for i in range(steps):
        params = step(params, jax.random.key(i))
    jax.block_until_ready(params)
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=256, help="JPEGs to generate")
    parser.add_argument("--batch", type=int, default=64, help="pipeline batch")
    parser.add_argument("--steps", type=int, default=10, help="timed pipeline batches")
    parser.add_argument("--model", default="ViT-B_16", help="model name, or 'none'")
    parser.add_argument("--model-batch", type=int, default=4)
    parser.add_argument("--model-steps", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, "images")
        write_jpegs(root, args.images)
        for crop in (224, 384):
            row = {"crop": crop, "cpu_cores": cores}
            for kind, ops in OPS.items():
                rate = pipeline_rate(
                    root, os.path.join(tmp, "tfds"), crop, ops, args.batch, args.steps
                )
                row[f"pipeline_{kind}_img_s"] = round(rate, 1)
                row[f"pipeline_{kind}_img_s_per_core"] = round(rate / cores, 1)
            rate = None
            if args.model != "none":
                rate = model_rate(args.model, crop, args.model_batch, args.model_steps)
            row["model"] = args.model if rate is not None else None
            row["model_img_s"] = None if rate is None else round(rate, 2)
            best = max(row["pipeline_default_img_s"], row["pipeline_fused_img_s"])
            row["ratio"] = None if not rate else round(best / rate, 1)
            rows.append(row)
    if args.json:
        print(json.dumps({"rows": rows}))
        return
    print(
        f"{'crop':>5} {'default img/s/core':>19} {'fused img/s/core':>17} "
        f"{'model img/s':>12} {'ratio':>7}"
    )
    for r in rows:
        model = "-" if r["model_img_s"] is None else f"{r['model_img_s']:.2f}"
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.1f}x"
        print(
            f"{r['crop']:>5} {r['pipeline_default_img_s_per_core']:>19} "
            f"{r['pipeline_fused_img_s_per_core']:>17} {model:>12} {ratio:>7}"
        )
    print(
        f"({cores} CPU cores; model: {args.model}; ratio = best pipeline img/s / model img/s,"
        " < 1 means input-bound)"
    )


if __name__ == "__main__":
    main()
