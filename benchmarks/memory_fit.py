"""Largest training batch that fits in a memory budget, with and without remat.

    python -m benchmarks.memory_fit --models ViT-B_16 ViT-L_16 --budget_gib 16 [--json]

Uses XLA's memory analysis of the compiled training step (arguments + outputs + temporaries,
minus donated aliases), so nothing is allocated: it runs on a small machine.
"""

from __future__ import annotations

from benchmarks import common
from benchmarks.model_throughput import abstract_step_args, train_step_fn
from vit_jax import models


def step_bytes(name: str, batch: int, image_size: int, remat: bool) -> int:
    model = models.get_model(name, num_classes=1000, remat=remat, scan_layers=True)
    args = abstract_step_args(model, batch, image_size)
    stats = train_step_fn(model).lower(*args).compile().memory_analysis()
    return (
        stats.argument_size_in_bytes
        + stats.output_size_in_bytes
        + stats.temp_size_in_bytes
        - stats.alias_size_in_bytes
    )


def largest_batch(name: str, image_size: int, remat: bool, budget: int) -> tuple[int, int]:
    """Doubling then bisection over the batch size; returns (batch, bytes at that batch)."""
    low, low_bytes, high = 0, 0, 1
    while True:
        used = step_bytes(name, high, image_size, remat)
        if used > budget:
            break
        low, low_bytes, high = high, used, high * 2
    while high - low > max(1, low // 16):  # Within ~6%: each probe is a full compile.
        mid = (low + high) // 2
        used = step_bytes(name, mid, image_size, remat)
        if used <= budget:
            low, low_bytes = mid, used
        else:
            high = mid
    return low, low_bytes


def main(argv=None) -> None:
    parser = common.model_parser(__doc__, ["ViT-B_16", "ViT-L_16"])
    parser.add_argument("--budget_gib", type=float, default=16.0)
    args = parser.parse_args(argv)
    budget = int(args.budget_gib * 2**30)
    rows = []
    for name in args.models:
        plain, plain_bytes = largest_batch(name, args.image_size, False, budget)
        remat, remat_bytes = largest_batch(name, args.image_size, True, budget)
        rows.append(
            {
                "model": name,
                "max_batch": plain,
                "gib_at_max": plain_bytes / 2**30,
                "max_batch_remat": remat,
                "gib_at_max_remat": remat_bytes / 2**30,
                "remat_gain": remat / max(plain, 1),
            }
        )
    common.report(
        rows,
        as_json=args.json,
        header={"budget_gib": args.budget_gib, "step": "SGD, float32, scan_layers"},
    )


if __name__ == "__main__":
    main()
