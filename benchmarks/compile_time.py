"""Training-step compile time with and without `scan_layers`, and with and without remat.

    python -m benchmarks.compile_time --models ViT-L_16 ViT-H_14 [--json]

Only lowers and compiles (no parameters are allocated: shapes come from `jax.eval_shape`), so
it runs on a small machine even for ViT-H/14.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

from benchmarks import common
from vit_jax import models


def compile_seconds(name: str, batch: int, image_size: int, scan: bool, remat: bool) -> float:
    model = models.get_model(name, num_classes=1000, scan_layers=scan, remat=remat)
    images = jax.ShapeDtypeStruct((batch, image_size, image_size, 3), jnp.float32)
    labels = jax.ShapeDtypeStruct((batch, 1000), jnp.float32)
    params = jax.eval_shape(lambda x: model.init(jax.random.key(0), x)["params"], images)

    def step(p, x, y):
        def loss_fn(q):
            logits = model.apply({"params": q}, x, train=False)
            return -jnp.mean(jnp.sum(jax.nn.log_softmax(logits) * y, axis=-1))

        loss, grads = jax.value_and_grad(loss_fn)(p)
        return jax.tree.map(lambda a, g: a - 0.01 * g, p, grads), loss

    start = time.perf_counter()
    jax.jit(step).lower(params, images, labels).compile()
    return time.perf_counter() - start


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["ViT-L_16", "ViT-H_14"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows = []
    for name in args.models:
        times = {
            (scan, remat): compile_seconds(name, args.batch, args.image_size, scan, remat)
            for scan in (False, True)
            for remat in (False, True)
        }
        rows.append(
            {
                "model": name,
                "unrolled_s": times[(False, False)],
                "scan_s": times[(True, False)],
                "scan_speedup": times[(False, False)] / times[(True, False)],
                "unrolled_remat_s": times[(False, True)],
                "scan_remat_s": times[(True, True)],
                "scan_remat_speedup": times[(False, True)] / times[(True, True)],
            }
        )
    common.report(rows, as_json=args.json, header={"batch": args.batch})


if __name__ == "__main__":
    main()
