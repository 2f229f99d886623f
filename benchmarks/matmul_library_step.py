"""The trainer's step with each matmul library, side by side in one process.

    python -m benchmarks.matmul_library_step [--model ViT-B_16] [--batch 8 [32 ...]]
        [--dtype bfloat16] [--libraries xla onednn openblas mkl] [--attention auto] [--rounds 4]
        [--json]

For each library (`models.matmul`, `matmul_library`: "xla", or a CPU custom call for the dense
layers and the explicit attention core's products, "onednn" (bfloat16 or float32) or
"openblas" or "mkl" (float32); "auto", the default's pick, may be added; a custom call is left out,
with the reason in the header, where it cannot run for `--dtype`) the model is
built with the attention implementation `--attention`, its trainer step compiled at the
trainer's defaults (`benchmarks.model_throughput.default_accum_steps`) for each batch size in
`--batch` (rows by library, then batch), and the first two losses printed: at one batch size they
must track each other. The steps are then timed round-robin
(`common.round_robin_seconds`), `--rounds` rounds of two steps each after an untimed one, each
round starting one row later, so that a machine whose speed drifts during the run (this 2-core
VM's does) slows every row alike. Each row: the median step in seconds, img/s, and its img/s
relative to the first row's (with several batch sizes rows are named `<library>_b<batch>`, and
the ratio is per image, so `--libraries auto --batch 8 32` answers whether batch 32 trains as fast
per image as batch 8). A loss that is not finite after the timing (a NaN stays in the parameters
once it reaches them) stops the run with its name. Re-executes itself with glibc's huge pages
first, as `python -m vit_jax.train` does.
"""

from __future__ import annotations

import argparse
import statistics
import sys

if __name__ == "__main__":  # Before the imports below: see vit_jax/cli/huge_pages.py.
    from vit_jax.cli import huge_pages

    huge_pages.reexec_with_huge_pages("benchmarks.matmul_library_step")

import jax.numpy as jnp

from benchmarks import common
from benchmarks.model_throughput import (
    default_accum_steps,
    random_batch,
    random_params,
    trainer_step_runner,
)
from vit_jax import models
from vit_jax.models import backend_tuning
from vit_jax.models.matmul import MATMUL_LIBRARIES


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="ViT-B_16")
    parser.add_argument(
        "--batch", type=int, nargs="+", default=[8], help="one row per library and size"
    )
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="bfloat16")
    parser.add_argument(
        "--libraries",
        nargs="+",
        choices=MATMUL_LIBRARIES,
        default=["xla", *backend_tuning.CUSTOM_CALLS],
    )
    parser.add_argument("--attention", default="auto", help="model.attention_implementation")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if min(args.batch) < 1 or len(set(args.batch)) < len(args.batch):
        raise SystemExit(f"--batch {args.batch}: give each batch size (at least 1) once")

    # Each custom call asked for: "built", or why it cannot run here for the dtype.
    builds = {
        name: backend_tuning.custom_call_unavailable(name, args.dtype) or "built"
        for name in args.libraries
        if name in backend_tuning.CUSTOM_CALLS
    }
    libraries = [name for name in args.libraries if builds.get(name, "built") == "built"]
    if not libraries:
        raise SystemExit(f"no library asked for can run here ({builds}); add xla to --libraries")
    runners, losses, accums, rows_of = {}, {}, {}, {}
    for library in libraries:
        model = models.get_model(
            args.model,
            num_classes=1000,
            dtype=jnp.dtype(args.dtype),
            attention_implementation=args.attention,
            matmul_library=library,
        )
        params = random_params(model, args.image_size)
        for batch in args.batch:
            # A row: (library, batch), named by the library alone when there is one batch size.
            name = library if len(args.batch) == 1 else f"{library}_b{batch}"
            images, labels = random_batch(batch, args.image_size)
            accums[name] = default_accum_steps(model, params, batch)  # Per library and batch.
            runner = trainer_step_runner(model, params, images, labels, accums[name])
            losses[name] = [float(runner()) for _ in range(2)]
            runners[name], rows_of[name] = runner, (library, batch)
            # On stderr, so that `--json` prints only the report on stdout.
            print(f"{name}: first losses {losses[name]}", file=sys.stderr)

    times = common.round_robin_train_steps(runners, rounds=args.rounds)
    order = list(runners)

    first = rows_of[order[0]][1] / statistics.median(times[order[0]])  # img/s
    rows = []
    for name in order:
        seconds = statistics.median(times[name])
        library, batch = rows_of[name]
        rows.append(
            {
                "library": library,
                "batch": batch,
                "accum_steps": accums[name],
                "step_s": seconds,
                "img_per_s": batch / seconds,
                f"vs_{order[0]}": batch / seconds / first,
                "losses": " ".join(f"{loss:.5f}" for loss in losses[name]),
            }
        )
    header = {
        "model": args.model,
        "dtype": args.dtype,
        "attention": args.attention,
        "rounds": args.rounds,
        **builds,
    }
    common.report(rows, as_json=args.json, header=header)


if __name__ == "__main__":
    main()
