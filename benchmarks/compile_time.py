"""Training-step compile time with and without `scan_layers`, and with and without remat.

    python -m benchmarks.compile_time --models ViT-L_16 ViT-H_14 [--json]

Only lowers and compiles (no parameters are allocated: shapes come from `jax.eval_shape`), so
it runs on a small machine even for ViT-H/14. Times are lowering (tracing the Flax model to
StableHLO) plus XLA compilation, each also reported alone; a throw-away compile first pays the
one-time start-up costs so they do not land on the first configuration.
"""

from __future__ import annotations

import time

import jax

from benchmarks import common
from benchmarks.model_throughput import abstract_step_args, train_step_fn
from vit_jax import models


def compile_seconds(
    name: str, batch: int, image_size: int, scan: bool, remat: bool
) -> tuple[float, float]:
    """(lowering seconds, XLA compile seconds) of the training step."""
    model = models.get_model(name, num_classes=1000, scan_layers=scan, remat=remat)
    step = train_step_fn(model)
    args = abstract_step_args(model, batch, image_size)
    start = time.perf_counter()
    lowered = step.lower(*args)
    lowered_at = time.perf_counter()
    lowered.compile()
    return lowered_at - start, time.perf_counter() - lowered_at


def main(argv=None) -> None:
    parser = common.model_parser(__doc__, ["ViT-L_16", "ViT-H_14"])
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args(argv)
    jax.jit(lambda x: x + 1).lower(1.0).compile()  # One-time start-up costs.
    rows = []
    for name in args.models:
        for remat in (False, True):
            (lower_u, xla_u), (lower_s, xla_s) = (
                compile_seconds(name, args.batch, args.image_size, scan, remat)
                for scan in (False, True)
            )
            rows.append(
                {
                    "model": name,
                    "remat": remat,
                    "unrolled_s": lower_u + xla_u,
                    "scan_s": lower_s + xla_s,
                    "scan_speedup": (lower_u + xla_u) / (lower_s + xla_s),
                    "lower_unrolled_s": lower_u,
                    "lower_scan_s": lower_s,
                    "xla_unrolled_s": xla_u,
                    "xla_scan_s": xla_s,
                }
            )
    common.report(rows, as_json=args.json, header={"batch": args.batch})


if __name__ == "__main__":
    main()
