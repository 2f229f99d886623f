"""ViT forward and training-step throughput as a fraction of this machine's matmul peak.

Measures, in one run: XLA's square-matmul GFLOP/s (float32 and bfloat16), then for each model,
batch size and dtype the img/s, img/s per core, achieved GFLOP/s (FLOPs from XLA's cost
analysis) and the ratio to the matmul peak of the same dtype. bfloat16 rows also give the
speed-up over float32 and the top-1 agreement with float32 on a fixed batch.

    python -m benchmarks.model_throughput --models ViT-B_16 --batches 8 32 [--train] [--json]
        [--micro_batch auto none] [--train --accum 1 4]
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks import common
from vit_jax import models


def random_params(model, image_size: int, seed: int = 0):
    """Initialised parameters with a random (not zero) head, so logits are informative."""
    params = model.init(jax.random.key(seed), jnp.zeros((1, image_size, image_size, 3)))["params"]
    head = params["head"]
    kernel = jax.random.normal(jax.random.key(seed + 1), head["kernel"].shape) * 0.02
    return {**params, "head": {**head, "kernel": kernel}}


def random_batch(batch: int, image_size: int) -> tuple[jax.Array, jax.Array]:
    """Random images in [-1, 1) `[batch, size, size, 3]` and one-hot labels `[batch, 1000]`."""
    images = jax.random.uniform(jax.random.key(2), (batch, image_size, image_size, 3), minval=-1)
    return images, jax.nn.one_hot(jnp.arange(batch) % 1000, 1000)


def forward_fn(model, micro_batch: models.micro_batch.MicroBatch = None):
    """The jitted inference forward: `model.apply` on the whole batch (None), or the library's
    inference path `models.micro_batched_apply` ("auto": micro-batches on CPU, or a size)."""
    if micro_batch is None:
        return jax.jit(lambda p, x: model.apply({"params": p}, x, train=False))
    return jax.jit(lambda p, x: models.micro_batched_apply(model, p, x, micro_batch=micro_batch))


def parse_micro_batch(value: str) -> models.micro_batch.MicroBatch:
    """'auto', 'none' (whole batches) or a number of images."""
    if value in ("auto", "none"):
        return None if value == "none" else "auto"
    return int(value)


def train_step_fn(model):
    def step(params, images, labels):
        def loss_fn(p):
            logits = model.apply({"params": p}, images, train=False).astype(jnp.float32)
            return -jnp.mean(jnp.sum(jax.nn.log_softmax(logits) * labels, axis=-1))

        loss, grads = jax.value_and_grad(loss_fn)(params)
        return jax.tree.map(lambda p, g: p - 0.01 * g, params, grads), loss

    return jax.jit(step, donate_argnums=(0,))


def time_train_step(model, params, images, labels) -> tuple[float, float]:
    """(median seconds, XLA FLOPs) of `train_step_fn(model)`, the parameters updated each call."""
    # Compiled once, for the FLOP count and every timed call (a big model compiles slowly),
    # unless a custom call runs the matmuls: then counted on XLA's (`common.with_xla_matmuls`).
    step = train_step_fn(model).lower(params, images, labels).compile()
    if _libraries(model) == "xla":
        flops = common.flops_of(step)
    else:
        counted = train_step_fn(common.with_xla_matmuls(model))
        flops = common.compiled_flops(counted, params, images, labels)
    state = {"params": params}

    def run():
        state["params"], loss = step(state["params"], images, labels)
        return loss

    return common.time_call(run), flops


def trainer_step_fn(model, accum_steps: int):
    """The trainer's own step (`vit_jax.training.step.make_train_step`: SGD, softmax cross-entropy,
    the batch split into `accum_steps` micro-batches) -> `(state, batch) -> (state, metrics)`."""
    from vit_jax.training import losses, step

    tx = optax.sgd(0.01)
    train_step = step.make_train_step(
        model, tx, losses.get_loss("softmax_xent"), lambda _: 0.01, accum_steps=accum_steps
    )
    return jax.jit(train_step, donate_argnums=(0,)), tx


def initial_train_state(params, tx):
    """The trainer's state at step 0 for `params` (copied: the trainer's step donates its state,
    and the caller keeps theirs) and the optimizer `tx`."""
    from vit_jax.training.step import TrainState

    params = jax.tree.map(jnp.copy, params)
    rng = jax.random.key_data(jax.random.key(0))
    return TrainState(jnp.zeros((), jnp.int32), params, tx.init(params), rng)


def trainer_step_runner(model, params, images, labels, accum_steps: int) -> Callable[[], Any]:
    """A call that runs one of the trainer's own steps (`trainer_step_fn`) on (images, labels),
    carrying the training state from call to call; it returns the step's loss."""
    trainer_step, tx = trainer_step_fn(model, accum_steps)
    state = {"train": initial_train_state(params, tx)}
    batch = {"image": images, "label": labels}

    def run():
        state["train"], metrics = trainer_step(state["train"], batch)
        return metrics["train_loss"]

    return run


def time_trainer_step(model, params, images, labels, accum_steps: int, **timing) -> float:
    """Median seconds of the trainer's own step (`trainer_step_fn`) on (images, labels)."""
    run = trainer_step_runner(model, params, images, labels, accum_steps)
    return common.time_call(run, **timing)


def default_accum_steps(model, params, batch: int) -> int:
    """The trainer's `accum_steps` when the config leaves it unset, on this process's backend
    (one device)."""
    from vit_jax.training import step

    return step.default_accum_steps(
        jax.default_backend(),
        batch,
        params,
        model.transformer["mlp_dim"],
        model.dtype,
        model.matmul_library,
    )


def abstract_step_args(model, batch: int, image_size: int):
    """Shapes of `train_step_fn`'s (params, images, labels), without allocating anything."""
    images = jax.ShapeDtypeStruct((batch, image_size, image_size, 3), jnp.float32)
    labels = jax.ShapeDtypeStruct((batch, 1000), jnp.float32)
    params = jax.eval_shape(lambda x: model.init(jax.random.key(0), x)["params"], images)
    return params, images, labels


def measure(
    name: str,
    batch: int,
    dtype,
    image_size: int,
    train: bool,
    peak: float,
    cores: int,
    micro_batch: models.micro_batch.MicroBatch = None,
    accum_steps: int | None = None,
):
    model = models.get_model(name, num_classes=1000, dtype=dtype)
    params = random_params(model, image_size)
    images, labels = random_batch(batch, image_size)
    if train and accum_steps:
        # FLOPs of the plain step: XLA's cost analysis counts the accumulation loop once.
        counted = train_step_fn(common.with_xla_matmuls(model))
        flops = common.compiled_flops(counted, params, images, labels)
        seconds = time_trainer_step(model, params, images, labels, accum_steps)
        logits = None
    elif train:
        seconds, flops = time_train_step(model, params, images, labels)
        logits = None
    else:
        forward = forward_fn(model, micro_batch)
        # FLOPs of the whole-batch program: XLA's cost analysis counts a loop's body once.
        flops = common.compiled_flops(forward_fn(common.with_xla_matmuls(model)), params, images)
        seconds = common.time_call(lambda: forward(params, images))
        logits = np.asarray(forward(params, images), np.float32)
    gflops = flops / seconds / 1e9
    library = models.matmul.resolve_library(model.matmul_library, model.dtype)
    row = {
        "model": name,
        "mode": "train" if train else "forward",
        "dtype": jnp.dtype(dtype).name,
        "batch": batch,
        "micro_batch": "-" if train else str(_resolved(micro_batch, library, params)),
        "accum_steps": accum_steps if train and accum_steps else "-",
        "matmuls": _libraries(model),
        "img_s": batch / seconds,
        "img_s_core": batch / seconds / cores,
        "gflop_per_img": flops / batch / 1e9,
        "gflop_s": gflops,
        "of_matmul_peak": gflops / peak,
    }
    return row, logits


def _libraries(model) -> str:
    """Who runs `model`'s matmuls here: the dense layers' library, and the attention core's
    products' where "auto" picks another for them (`models.matmul.resolve_attention_products`)."""
    dense = models.matmul.resolve_library(model.matmul_library, model.dtype)
    products = models.matmul.resolve_attention_products(model.matmul_library, model.dtype)
    return dense if products == dense else f"{dense}, attention products {products}"


def _resolved(micro_batch: models.micro_batch.MicroBatch, library: str, params) -> str:
    size = models.micro_batch_size(models.micro_batch.num_tokens(params), micro_batch, library)
    return "whole" if size is None else f"{size} ({micro_batch})"


def main(argv=None) -> None:
    parser = common.model_parser(__doc__, ["ViT-B_16"])
    parser.add_argument("--batches", nargs="+", type=int, default=[8, 32])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--train", action="store_true", help="Also time a training step.")
    parser.add_argument(
        "--micro_batch",
        nargs="+",
        default=["auto"],
        help="Forward passes through models.micro_batched_apply: 'auto', a size, or 'none' "
        "for one model.apply over the whole batch; several values give one row each.",
    )
    parser.add_argument(
        "--accum",
        nargs="+",
        type=int,
        default=[],
        help="With --train, also time the trainer's own step (vit_jax.training.step) with the "
        "batch "
        "split into each of these numbers of micro-batches (config.accum_steps).",
    )
    args = parser.parse_args(argv)

    cores = os.cpu_count() or 1
    peaks = {d: common.matmul_peak_gflops(jnp.dtype(d)) for d in args.dtypes}
    rows = []
    for name in args.models:
        for batch in args.batches:
            modes = [(False, parse_micro_batch(m), None) for m in args.micro_batch]
            modes += [(True, None, None)] if args.train else []
            modes += [(True, None, k) for k in args.accum] if args.train else []
            for train, micro_batch, accum_steps in modes:
                logits_by_dtype = {}
                for dtype in args.dtypes:
                    row, logits = measure(
                        name,
                        batch,
                        jnp.dtype(dtype),
                        args.image_size,
                        train,
                        peaks[dtype],
                        cores,
                        micro_batch,
                        accum_steps,
                    )
                    logits_by_dtype[dtype] = (row, logits)
                    rows.append(row)
                if "float32" in logits_by_dtype and "bfloat16" in logits_by_dtype:
                    row32, logits32 = logits_by_dtype["float32"]
                    row16, logits16 = logits_by_dtype["bfloat16"]
                    row16["speedup_vs_f32"] = row16["img_s"] / row32["img_s"]
                    if logits32 is not None:
                        agree = np.mean(logits32.argmax(-1) == logits16.argmax(-1))
                        row16["top1_agreement"] = float(agree)
    common.report(
        rows,
        as_json=args.json,
        header={"matmul_peak_gflop_s": peaks, "image_size": args.image_size},
    )


if __name__ == "__main__":
    main()
