"""The attention core's forward and backward pass: the packed attention (hand-written bfloat16
gradient) against JAX's gradient of the explicit attention, and PyTorch's SDPA, in one run.

    python -m benchmarks.attention_core [--batch 8] [--tokens 197] [--heads 12]
        [--head_dim 64] [--dtypes bfloat16 float32] [--repeats 11] [--json]

Input: one packed `qkv [B, N, 3, H, K]` as the self-attention's input matmul makes it; output
`[B, N, H, K]`; the time of the gradient with respect to `qkv` (forward included). Defaults
are ViT-B/16 shapes at batch 8. "explicit" is `explicit_attention` on the three slices of
`qkv` under `jax.vjp` (what the model ran before `packed_attention`); "packed" is
`models.attention_core.packed_attention`, which is that same function for float32; "onednn"
is `packed_attention(products="onednn")`, the packed attention's VJP (also for float32) with its
six products by oneDNN's custom call (`models.onednn_matmul`; its columns are empty where that
does not run). torch: SDPA on [B, H, N, K] tensors, gradients by `torch.autograd.grad` (skipped
without the `torch` extra). Each is timed twice, and the faster median is kept.
"""

from __future__ import annotations

import os
import time

import jax
import numpy as np

from benchmarks import common
from vit_jax.models import backend_tuning
from vit_jax.models.attention_core import explicit_attention, packed_attention


def _explicit(qkv):
    return explicit_attention(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], scale=1.0)[0]


def _gradient_fn(core, cotangent):
    return jax.jit(lambda qkv: jax.vjp(core, qkv)[1](cotangent)[0])


def _torch_seconds(shape, dtype: str, repeats: int) -> float | None:
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(os.cpu_count() or 1)
    batch, tokens, _, heads, head_dim = shape
    torch_dtype = getattr(torch, dtype)
    q, k, v = (
        torch.randn(batch, heads, tokens, head_dim, dtype=torch_dtype, requires_grad=True)
        for _ in range(3)
    )
    cotangent = torch.randn(batch, heads, tokens, head_dim, dtype=torch_dtype)

    def step():
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v)
        torch.autograd.grad(out, (q, k, v), cotangent)

    for _ in range(2):
        step()
    medians = []
    for _ in range(2):
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        medians.append(float(np.median(times)))
    return min(medians)


def measure(shape, dtype: str, repeats: int) -> dict:
    key_qkv, key_cot = jax.random.split(jax.random.key(0))
    qkv = jax.random.normal(key_qkv, shape).astype(dtype)  # [B, N, 3, H, K]
    cotangent = jax.random.normal(key_cot, shape[:2] + shape[3:]).astype(dtype)
    variants = {
        "explicit": _gradient_fn(_explicit, cotangent),
        "packed": _gradient_fn(packed_attention, cotangent),
    }
    if backend_tuning.custom_call_unavailable("onednn", dtype) is None:
        core = lambda x: packed_attention(x, products="onednn")
        variants["onednn"] = _gradient_fn(core, cotangent)
    grads = {name: np.asarray(fn(qkv), np.float32) for name, fn in variants.items()}
    seconds = {name: float("inf") for name in variants}
    for _ in range(2):
        for name, fn in variants.items():
            median = common.time_call(lambda fn=fn: fn(qkv), repeats=repeats)
            seconds[name] = min(seconds[name], median)
    torch_s = _torch_seconds(shape, dtype, repeats)
    onednn_s = seconds.get("onednn")
    return {
        "dtype": dtype,
        "explicit_ms": 1e3 * seconds["explicit"],
        "packed_ms": 1e3 * seconds["packed"],
        "packed_speedup": seconds["explicit"] / seconds["packed"],
        "torch_sdpa_ms": None if torch_s is None else 1e3 * torch_s,
        "packed_vs_torch": None if torch_s is None else torch_s / seconds["packed"],
        "max_rel_diff": common.relative_difference(grads["packed"], grads["explicit"]),
        "onednn_ms": None if onednn_s is None else 1e3 * onednn_s,
        "onednn_vs_packed": None if onednn_s is None else seconds["packed"] / onednn_s,
        "onednn_max_rel_diff": (
            None
            if onednn_s is None
            else common.relative_difference(grads["onednn"], grads["explicit"])
        ),
    }


def main(argv=None) -> None:
    parser = common.attention_parser(__doc__, batch=8, repeats=11)
    args = parser.parse_args(argv)
    shape = (args.batch, args.tokens, 3, args.heads, args.head_dim)
    rows = [measure(shape, dtype, args.repeats) for dtype in args.dtypes]
    onednn = {
        d: backend_tuning.custom_call_unavailable("onednn", d) or "built" for d in args.dtypes
    }
    common.report(rows, as_json=args.json, header={"qkv_shape": list(shape), "onednn": onednn})


if __name__ == "__main__":
    main()
