"""Inference throughput and latency of a registered model against batch size, per core.

    python benchmarks/inference.py --model ViT-B_16
    python benchmarks/inference.py --model ViT-L_16 --image_size 384 --batch_sizes 1,8,32
    python benchmarks/inference.py --model ViT-Ti_16 --num_layers 1 --image_size 32 --steps 2

Like the original vit_jax inference-time tool, the batch size is per core (device): each step
runs `batch * devices` images, sharded over all local devices, and throughput is reported per
core. Parameters are random (float32; the bfloat16 runs compute in bfloat16). Each row gives
the compile time, the median step latency and images/s per core; `--json` prints the rows as
one JSON list instead of a table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from vit_jax import checkpoint, models

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def benchmark(
    model_name: str,
    *,
    image_size: int = 224,
    batch_sizes: Sequence[int] = (1, 8, 32),
    dtypes: Sequence[str] = ("float32", "bfloat16"),
    steps: int = 10,
    warmup: int = 2,
    num_classes: int = 1000,
    num_layers: int | None = None,
) -> list[dict[str, Any]]:
    """One row per (dtype, per-core batch size): latency, img/s per core and in total."""
    devices = jax.local_devices()
    mesh = Mesh(np.array(devices), ("data",))
    replicated = NamedSharding(mesh, PartitionSpec())
    sharded = NamedSharding(mesh, PartitionSpec("data"))
    overrides = {} if num_layers is None else {"transformer": {"num_layers": num_layers}}
    rows = []
    params = None
    for dtype_name in dtypes:
        model = models.get_model(
            model_name, num_classes=num_classes, dtype=DTYPES[dtype_name], **overrides
        )
        if params is None:  # Parameters are float32 whatever the compute dtype.
            dummy = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
            init = jax.jit(model.init, out_shardings=replicated)
            params = init(jax.random.key(0), dummy)["params"]
        forward = jax.jit(
            lambda p, x, model=model: model.apply({"params": p}, x),
            in_shardings=(replicated, sharded),
            out_shardings=sharded,
        )
        for per_core in batch_sizes:
            batch = per_core * len(devices)
            images = jax.device_put(
                jax.random.uniform(
                    jax.random.key(1), (batch, image_size, image_size, 3), minval=-1
                ),
                sharded,
            )
            start = time.perf_counter()
            forward(params, images).block_until_ready()
            compile_s = time.perf_counter() - start
            for _ in range(warmup):
                forward(params, images).block_until_ready()
            times = []
            for _ in range(steps):
                start = time.perf_counter()
                forward(params, images).block_until_ready()
                times.append(time.perf_counter() - start)
            latency = statistics.median(times)
            rows.append(
                {
                    "model": model_name,
                    "image_size": image_size,
                    "dtype": dtype_name,
                    "devices": len(devices),
                    "batch_per_core": per_core,
                    "compile_s": compile_s,
                    "latency_ms": 1000 * latency,
                    "img_per_s": batch / latency,
                    "img_per_s_per_core": per_core / latency,
                }
            )
    return rows


def _table(rows: Sequence[dict[str, Any]]) -> str:
    device = jax.local_devices()[0]
    head = (
        f"{rows[0]['model']} at {rows[0]['image_size']}px on {rows[0]['devices']} x "
        f"{device.device_kind} ({device.platform})\n"
        f"{'dtype':>9} {'batch/core':>10} {'compile s':>9} {'latency ms':>10} "
        f"{'img/s/core':>10} {'img/s':>9}"
    )
    lines = [
        f"{r['dtype']:>9} {r['batch_per_core']:>10} {r['compile_s']:>9.2f} "
        f"{r['latency_ms']:>10.2f} {r['img_per_s_per_core']:>10.1f} {r['img_per_s']:>9.1f}"
        for r in rows
    ]
    return "\n".join([head, *lines])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="ViT-B_16", help="registered name (vit_jax.models)")
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument(
        "--batch_sizes", type=_ints, default=[1, 8, 32], help="per core, e.g. 1,8,32"
    )
    parser.add_argument("--dtypes", default="float32,bfloat16", help="float32 and/or bfloat16")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per row")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps after compiling")
    parser.add_argument("--num_layers", type=int, help="shrink the encoder (smoke tests)")
    parser.add_argument("--json", action="store_true", help="print rows as a JSON list")
    args = parser.parse_args(argv)
    dtypes = [d for d in args.dtypes.split(",") if d]
    unknown = sorted(set(dtypes) - set(DTYPES))
    if unknown or not args.batch_sizes or min(args.batch_sizes) < 1 or args.steps < 1:
        parser.error(
            f"need dtypes from {sorted(DTYPES)} (got {unknown or dtypes}), batch sizes >= 1 "
            "and steps >= 1"
        )
    try:
        config = models.get_config(args.model)
    except KeyError as e:
        parser.error(str(e.args[0]))
    stride = checkpoint.patch_stride(config)
    if args.image_size % stride[0] or args.image_size % stride[1]:
        parser.error(
            f"--image_size {args.image_size} is not a multiple of {args.model}'s patch stride "
            f"{stride[0]}."
        )
    rows = benchmark(
        args.model,
        image_size=args.image_size,
        batch_sizes=args.batch_sizes,
        dtypes=dtypes,
        steps=args.steps,
        warmup=args.warmup,
        num_layers=args.num_layers,
    )
    print(json.dumps(rows, indent=2) if args.json else _table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
