"""Training input pipeline img/s per CPU core: the random-access pipeline against tf.data's
shuffle-buffer design (the previous one, kept here as the baseline), side by side.

    python -m benchmarks.input_pipeline                 # table, pinned to one core
    python -m benchmarks.input_pipeline --cores 2 --json

Runs offline: it writes ImageNet-sized JPEGs (500x375, ~110 KB) into a temporary image folder
and prepares it twice, as ArrayRecord (what vit_jax reads) and as TFRecord (the baseline's
format). Both pipelines run the same op strings from `vit_jax.data.pp` (decode, Inception
crop, flip, value range, one-hot; and with RandAugment + mixup, AugReg's medium2), so they
differ only in how examples are found and ordered:
  random_access  `vit_jax.data.pipeline.train_dataset`: a global per-epoch permutation,
                 records read by index; its saved position is one batch index.
  tfdata_buffer  TFRecord files read in sequence through a shuffle buffer of encoded images;
                 its saved position holds the whole buffer.
The process is pinned to `--cores` cores (TensorFlow's thread pools sized to match); rounds
alternate the two pipelines and the medians are reported.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

OPS = {
    "crop_flip": "decode|inception_crop({crop})|flip_lr|value_range(-1, 1)|onehot(10)",
    "randaug_mixup": (
        "decode|inception_crop({crop})|flip_lr|randaug(2, 15)|value_range(-1, 1)|onehot(10)"
    ),
}
MIXUP_ALPHA = {"crop_flip": 0.0, "randaug_mixup": 0.5}  # medium2's alpha.


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


def _config(root: str, data_dir: str, crop: int, kind: str, batch: int):
    from vit_jax import data

    cfg = data.default_config()
    cfg.dataset, cfg.tfds_data_dir, cfg.batch = root, data_dir, batch
    cfg.pp.crop, cfg.pp.train, cfg.pp.train_ops = crop, "train", OPS[kind].format(crop=crop)
    cfg.pp.mixup_alpha = MIXUP_ALPHA[kind]
    return cfg


def random_access(cfg, batch: int, threads: int):
    from vit_jax import data
    from vit_jax.data import pipeline

    dataset = data.open_dataset(cfg)
    ds = pipeline.train_dataset(
        dataset, global_batch=batch, local_batch=batch, shard_index=0, start_batch=0
    )
    return _threads(ds, threads)


def tfdata_buffer(cfg, batch: int, threads: int, builder, buffer: int):
    """The previous design: sequential TFRecord reads, a shuffle buffer, the same ops."""
    import tensorflow as tf
    import tensorflow_datasets as tfds

    from vit_jax.data import pp
    from vit_jax.data.pp.mixup import mixup

    ds = builder.as_dataset(
        split="train",
        shuffle_files=True,
        decoders={"image": tfds.decode.SkipDecoding()},
        read_config=tfds.ReadConfig(shuffle_seed=0, try_autocache=False, skip_prefetch=True),
    )
    ds = ds.map(lambda ex: {"image": ex["image"], "label": ex["label"]})
    ds = ds.shuffle(buffer, seed=0, reshuffle_each_iteration=True).repeat()
    base = tf.constant([0, 1], tf.int64)
    ds = ds.enumerate().map(
        lambda i, ex: {**ex, pp.RNG_KEY: tf.random.experimental.stateless_fold_in(base, i)}
    )
    op = pp.parse(cfg.pp.train_ops)
    ds = ds.map(op, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.map(lambda ex: {"image": ex["image"], "label": tf.cast(ex["label"], tf.float32)})
    ds = ds.batch(batch, drop_remainder=True)
    if cfg.pp.mixup_alpha > 0:
        mix = tf.constant([0, 2], tf.int64)
        alpha = cfg.pp.mixup_alpha
        ds = ds.enumerate().map(
            lambda i, b: mixup(b, tf.random.experimental.stateless_fold_in(mix, i), alpha)
        )
    return _threads(ds.prefetch(tf.data.AUTOTUNE), threads)


def _threads(ds, threads: int):
    import tensorflow as tf

    options = tf.data.Options()
    options.threading.private_threadpool_size = threads
    options.deterministic = True
    return ds.with_options(options)


def rate(ds, batch: int, steps: int) -> float:
    it = iter(ds)
    for _ in range(3):  # Warm-up: graph setup, the baseline's first buffer fill.
        next(it)
    start = time.perf_counter()
    for _ in range(steps):
        next(it)
    return steps * batch / (time.perf_counter() - start)


def pin(cores: int) -> int:
    """Pins this process to its first `cores` CPUs before TensorFlow starts."""
    available = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if available:
        cores = min(cores, len(available))
        os.sched_setaffinity(0, available[:cores])
    os.environ["TF_NUM_INTRAOP_THREADS"] = str(cores)
    os.environ["TF_NUM_INTEROP_THREADS"] = str(cores)
    return cores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=256, help="JPEGs to generate")
    parser.add_argument("--cores", type=int, default=1, help="CPU cores to pin to")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=8, help="timed batches per round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    parser.add_argument("--crop", type=int, default=224)
    parser.add_argument("--buffer", type=int, default=1000, help="the baseline's buffer")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    cores = pin(args.cores)

    from tensorflow_datasets.core.file_adapters import FileFormat

    from vit_jax.data.image_folder import ImageFolder

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, "images")
        write_jpegs(root, args.images)
        tfrecord = ImageFolder(root, data_dir=os.path.join(tmp, "tfds_tfrecord"))
        tfrecord.download_and_prepare(file_format=FileFormat.TFRECORD)
        for kind in OPS:
            cfg = _config(root, os.path.join(tmp, "tfds"), args.crop, kind, args.batch)
            make = {
                "random_access": lambda cfg=cfg: random_access(cfg, args.batch, cores),
                "tfdata_buffer": lambda cfg=cfg: tfdata_buffer(
                    cfg, args.batch, cores, tfrecord, args.buffer
                ),
            }
            measured: dict[str, list[float]] = {name: [] for name in make}
            for _ in range(args.rounds):
                for name, build in make.items():
                    measured[name].append(rate(build(), args.batch, args.steps))
            new = statistics.median(measured["random_access"]) / cores
            old = statistics.median(measured["tfdata_buffer"]) / cores
            rows.append(
                {
                    "ops": kind,
                    "crop": args.crop,
                    "cores": cores,
                    "random_access_img_s_per_core": round(new, 1),
                    "tfdata_buffer_img_s_per_core": round(old, 1),
                    "ratio": round(new / old, 3),
                }
            )
    if args.json:
        print(json.dumps({"rows": rows}))
        return
    print(f"{'ops':>14} {'random access':>14} {'tf.data buffer':>15} {'ratio':>7}  (img/s/core)")
    for r in rows:
        print(
            f"{r['ops']:>14} {r['random_access_img_s_per_core']:>14} "
            f"{r['tfdata_buffer_img_s_per_core']:>15} {r['ratio']:>6.2f}x"
        )
    print(
        f"({cores} core(s); {args.images} JPEGs of 500x375 at crop {args.crop}; batch "
        f"{args.batch}; median of {args.rounds} alternating rounds)"
    )


if __name__ == "__main__":
    main()
