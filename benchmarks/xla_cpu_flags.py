"""The trainer's ViT-B/16 training step under XLA:CPU options, each against no options, in one
run: which flags of the installed jaxlib help CPU training.

    python -m benchmarks.xla_cpu_flags [--batch 8] [--image_size 224] [--repeats 3] [--json]
        [--flags xla_cpu_use_xnnpack=true "xla_cpu_use_onednn=true xla_cpu_ftz=true" ...]

XLA reads XLA_FLAGS once, when its CPU backend starts, so every setting runs in a child
process of its own (the same script with `--child`); the children run one after another, and
the no-flags baseline runs first and last, so that a drift of the machine's speed during the
run shows as a difference between the two.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

# Options present in jaxlib 0.10.2 that change how XLA:CPU compiles dots and fusions; each
# setting is one or more `name=value`, without the leading "--" (argparse would take it for
# an option of this script).
DEFAULT_FLAGS = (
    "xla_cpu_use_onednn=true",
    "xla_cpu_experimental_onednn_fusion_type=dot",
    "xla_cpu_use_xnnpack=true",
    "xla_cpu_experimental_xnn_fusion_type=dot",
    "xla_cpu_enable_concurrency_optimized_scheduler=true",
    "xla_cpu_enable_fast_math=true",
)
BASELINE = ""


def child(batch: int, image_size: int, repeats: int) -> None:
    """Times the trainer's step at its defaults in this process; prints one JSON line."""

    from benchmarks.model_throughput import (
        default_accum_steps,
        random_batch,
        random_params,
        time_trainer_step,
    )
    from vit_jax import models

    model = models.get_model("ViT-B_16", num_classes=1000)
    params = random_params(model, image_size)
    images, labels = random_batch(batch, image_size)
    accum_steps = default_accum_steps(model, params, batch)
    seconds = time_trainer_step(
        model, params, images, labels, accum_steps, warmup=1, repeats=repeats
    )
    print(json.dumps({"seconds": seconds, "accum_steps": accum_steps}))


def run_child(flags: str, args: argparse.Namespace) -> dict:
    xla_flags = " ".join(f"--{flag.removeprefix('--')}" for flag in flags.split())
    env = dict(os.environ, XLA_FLAGS=xla_flags, JAX_PLATFORMS="cpu")
    command = [sys.executable, "-m", "benchmarks.xla_cpu_flags", "--child"]
    command += ["--batch", str(args.batch), "--image_size", str(args.image_size)]
    command += ["--repeats", str(args.repeats)]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:  # E.g. a flag this jaxlib rejects: a row, not fatal.
        return {"error": (done.stderr.strip().splitlines() or ["no output"])[-1][:120]}
    return json.loads(lines[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--flags", nargs="+", default=list(DEFAULT_FLAGS))
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.batch, args.image_size, args.repeats)
        return

    from benchmarks import common

    settings = [BASELINE, *args.flags, BASELINE]
    results = [(flags, run_child(flags, args)) for flags in settings]
    baseline = [r["seconds"] for flags, r in results if flags == BASELINE and "seconds" in r]
    reference = min(baseline) if baseline else None
    rows = []
    for flags, result in results:
        seconds = result.get("seconds")
        rows.append(
            {
                "xla_flags": flags or "(none)",
                "img_s": args.batch / seconds if seconds else None,
                "speedup_vs_none": reference / seconds if seconds and reference else None,
                "accum_steps": result.get("accum_steps"),
                "error": result.get("error"),
            }
        )
    header = {"model": "ViT-B_16", "batch": args.batch, "image_size": args.image_size}
    common.report(rows, as_json=args.json, header=header)


if __name__ == "__main__":
    main()
