"""The trainer's step with a narrowing kernel's gradient computed transposed or plainly, side by
side in one process.

    python -m benchmarks.kernel_gradient_orientation [--model ViT-B_16] [--batch 32]
        [--dtype bfloat16] [--rounds 4] [--json]

`models.matmul` computes the gradient of a dense kernel [I, O] with I > O (the MLP's second
layer) as an [O, I] product transposed back (`_narrowing_kernel_gradient`); the "plain" row
puts back the form every other kernel takes (`_backward_einsum`: a transposed copy of the
layer's input times the cotangent). Each row's trainer step (XLA's matmuls, the trainer's
default `accum_steps`) is compiled under its form, its first two losses printed (the first is
the same forward's; the second follows one update by either form, whose products are summed in
another order: they agree to rounding), and the steps timed round-robin
(`common.round_robin_seconds`) as in `benchmarks.matmul_library_step`. Only compute dtypes
narrower than float32 take this backward pass (float32 keeps JAX's own gradient), so the two
rows of a float32 run time the same program. Re-executes itself with glibc's huge pages first,
as `python -m vit_jax.train` does.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

if __name__ == "__main__":  # Before the imports below: see vit_jax/cli/huge_pages.py.
    from vit_jax.cli import huge_pages

    huge_pages.reexec_with_huge_pages("benchmarks.kernel_gradient_orientation")

import jax
import jax.numpy as jnp

from benchmarks import common
from benchmarks.model_throughput import (
    default_accum_steps,
    random_batch,
    random_params,
    trainer_step_runner,
)
from vit_jax import models
from vit_jax.models import matmul


def plain_kernel_gradient(x: jax.Array, cotangent: jax.Array) -> jax.Array:
    """The weight gradient as every other kernel gets it: x [T, I] contracted with the
    cotangent [T, O] over tokens -> [I, O], float32."""
    x_spec, kernel_spec, out_spec = matmul._operand_specs(matmul.DENSE_SPEC)
    return matmul._backward_einsum(x_spec, x, out_spec, cotangent, kernel_spec)


@contextmanager
def kernel_gradient(form: Callable[[jax.Array, jax.Array], jax.Array]) -> Iterator[None]:
    """Within the block, programs traced compute narrowing kernels' gradients by `form`."""
    kept = matmul._narrowing_kernel_gradient
    matmul._narrowing_kernel_gradient = form
    try:
        yield
    finally:
        matmul._narrowing_kernel_gradient = kept


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="ViT-B_16")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="bfloat16")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    model = models.get_model(
        args.model, num_classes=1000, dtype=jnp.dtype(args.dtype), matmul_library="xla"
    )
    params = random_params(model, args.image_size)
    images, labels = random_batch(args.batch, args.image_size)
    accum_steps = default_accum_steps(model, params, args.batch)
    forms = {"transposed": matmul._narrowing_kernel_gradient, "plain": plain_kernel_gradient}
    runners, losses = {}, {}
    for name, form in forms.items():
        runner = trainer_step_runner(model, params, images, labels, accum_steps)
        with kernel_gradient(form):  # The first call traces and compiles the step.
            losses[name] = [float(runner()) for _ in range(2)]
        runners[name] = runner
        # On stderr, so that `--json` prints only the report on stdout.
        print(f"{name}: first losses {losses[name]}", file=sys.stderr)

    times = common.round_robin_train_steps(runners, rounds=args.rounds)
    plain = statistics.median(times["plain"])
    rows = []
    for name in forms:
        seconds = statistics.median(times[name])
        rows.append(
            {
                "kernel_gradient": name,
                "step_s": seconds,
                "img_per_s": args.batch / seconds,
                "vs_plain": plain / seconds,
                "losses": " ".join(f"{loss:.6f}" for loss in losses[name]),
            }
        )
    header = {
        "model": args.model,
        "batch": args.batch,
        "dtype": args.dtype,
        "accum_steps": accum_steps,
        "rounds": args.rounds,
    }
    common.report(rows, as_json=args.json, header=header)


if __name__ == "__main__":
    main()
