"""How ViT forward cost grows with resolution and batch, and the share of time in attention.

For each image size and batch: img/s, GFLOP per image (XLA cost analysis), the ratio to the
in-run matmul peak, and the share of the forward time (and of the FLOPs) spent in the attention
core (QK^T, softmax, attention x V; projections excluded), measured by timing that core alone
on the model's q/k/v shapes, once per layer.

    python -m benchmarks.scaling --model ViT-B_16 --sizes 224 384 512 --batches 1 8 32 [--json]

Sizes are timed at the first batch of `--size_batch`; batches at 224.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

from benchmarks import common
from benchmarks.model_throughput import forward_fn, parse_micro_batch, random_params
from vit_jax import models
from vit_jax.models.attention_core import packed_attention


def attention_core_seconds(batch: int, tokens: int, heads: int, head_dim: int, dtype, repeats):
    """The model's own core (`packed_attention`) on a packed qkv `[B, N, 3, H, K]`."""
    qkv = jax.random.normal(jax.random.key(3), (batch, tokens, 3, heads, head_dim)).astype(dtype)
    core = jax.jit(packed_attention)
    flops = common.compiled_flops(core, qkv)
    return common.time_call(lambda: core(qkv), repeats=repeats), flops


def measure(
    name: str, batch: int, size: int, dtype, peak: float, repeats: int, micro_batch=None
) -> dict:
    model = models.get_model(name, num_classes=1000, dtype=dtype)
    params = random_params(model, size)
    images = jax.random.uniform(jax.random.key(2), (batch, size, size, 3), minval=-1)
    forward = forward_fn(model, micro_batch)
    # The whole-batch program, with XLA's matmuls (`common.with_xla_matmuls`).
    flops = common.compiled_flops(forward_fn(common.with_xla_matmuls(model)), params, images)
    seconds = common.time_call(lambda: forward(params, images), repeats=repeats)

    width, layers = model.hidden_size, model.transformer["num_layers"]
    heads = model.transformer["num_heads"]
    patch = model.patches["size"][0]
    tokens = (size // patch) ** 2 + (1 if model.classifier == "token" else 0)
    core_s, core_flops = attention_core_seconds(
        batch, tokens, heads, width // heads, dtype, repeats
    )
    return {
        "model": name,
        "dtype": jnp.dtype(dtype).name,
        "image_size": size,
        "tokens": tokens,
        "batch": batch,
        "img_s": batch / seconds,
        "gflop_per_img": flops / batch / 1e9,
        "of_matmul_peak": flops / seconds / 1e9 / peak,
        "attention_time_share": min(1.0, layers * core_s / seconds),
        "attention_flop_share": layers * core_flops / flops,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ViT-B_16")
    parser.add_argument("--sizes", nargs="+", type=int, default=[224, 384, 512])
    parser.add_argument("--size_batch", type=int, default=4)
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8, 32])
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--micro_batch",
        default="none",
        help="'none' (one model.apply per batch), 'auto' or a size: the library's inference "
        "path, models.micro_batched_apply. The attention share always uses the whole batch.",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    dtype = jnp.dtype(args.dtype)
    peak = common.matmul_peak_gflops(dtype)
    micro = parse_micro_batch(args.micro_batch)
    measure_at = lambda batch, size: measure(
        args.model, batch, size, dtype, peak, args.repeats, micro
    )
    rows = [measure_at(args.size_batch, s) for s in args.sizes]
    rows += [
        measure_at(b, 224) for b in args.batches if not (b == args.size_batch and 224 in args.sizes)
    ]
    common.report(rows, as_json=args.json, header={"matmul_peak_gflop_s": peak})


if __name__ == "__main__":
    main()
