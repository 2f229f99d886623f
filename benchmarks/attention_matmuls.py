"""The attention core's batched matmuls one at a time, as XLA runs them against `torch.matmul`,
with one dense-layer matmul of the same layer for contrast, in one run.

    python -m benchmarks.attention_matmuls [--batch 4] [--tokens 197] [--heads 12]
        [--head_dim 64] [--dtypes bfloat16 float32] [--repeats 20] [--json]

Why: at ViT-B/16 shapes the dense layers' matmuls run level with torch's, but the attention
core's six matmuls per layer (two forward, four backward) are `B * H` small products of
`[N, K]` and `[N, N]` tiles. These rows show what each of their three forms costs (each form
is used twice per layer: `qk` by the logits and the attention weights' gradient, `pv` by the
output and the query's gradient, `ptx` by the key's and the value's gradients).

The JAX side runs the form the model runs: `matmul.einsum_f32_materialised` for bfloat16 (the
packed core, forward and backward), `matmul.einsum_f32` for float32, both accumulating and
returning float32. torch multiplies the same arrays in their own dtype, in this process (no
`torch` extra: torch columns are empty). `xla_cores_busy` is the mean number of cores in use
while XLA ran: process CPU seconds over wall seconds, warm-up calls and spin-waiting threads
included, so an upper bound on parallel work (about 1.0: one core working). `max_rel_diff`
(XLA) and `torch_max_rel_diff` compare each product with NumPy's in float32 on the same
operands: max |difference| / max |NumPy's|. Defaults: a training micro-batch of 4 images.

The `onednn_*` columns run each product inside a jitted JAX program through oneDNN's batched
matmul, as an XLA custom call (`models.onednn_matmul`: the library torch's CPU matmuls use,
float32 outputs like XLA's), on the same operands in `dtype`; empty where it is unavailable
(the header says why).
"""

from __future__ import annotations

import os
import resource
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common
from vit_jax.models import backend_tuning, onednn_matmul
from vit_jax.models.attention_core import CUSTOM_CALL_LAYOUTS
from vit_jax.models.matmul import DENSE_SPEC, einsum_f32, einsum_f32_materialised

# name -> (einsum over [B, H, ., .] operands, operand shapes given tokens n and head dim k).
FORMS: dict[str, tuple[str, Callable[[int, int], tuple[tuple[int, int], tuple[int, int]]]]] = {
    "qk": ("bhqk,bhsk->bhqs", lambda n, k: ((n, k), (n, k))),
    "pv": ("bhqs,bhsk->bhqk", lambda n, k: ((n, n), (n, k))),
    "ptx": ("bhqs,bhqk->bhsk", lambda n, k: ((n, n), (n, k))),
}
# For contrast, one dense matmul of the same layer: the MLP's first,
# `[B * N, H * K] x [H * K, 4 * H * K]`.
DENSE = "dense"


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _time_xla(fn: Callable[[], Any], repeats: int) -> tuple[float, float]:
    """(median wall seconds, mean cores busy) of `fn()` after two warm-up calls."""
    cpu_before, wall_before = _cpu_seconds(), time.perf_counter()
    seconds = common.seconds_each(fn, warmup=2, repeats=repeats)
    # The warm-up calls are in both differences, so the ratio stays a ratio of like to like.
    busy = (_cpu_seconds() - cpu_before) / (time.perf_counter() - wall_before)
    return float(np.median(seconds)), busy


def _torch_product(
    lhs: np.ndarray, rhs: np.ndarray, name: str, dtype: str, repeats: int
) -> tuple[float, np.ndarray] | None:
    """(median seconds, float32 result) of the same product in torch; None without torch."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(os.cpu_count() or 1)
    a, b = (torch.from_numpy(x).to(getattr(torch, dtype)) for x in (lhs, rhs))
    products = {
        "qk": lambda: torch.matmul(a, b.transpose(-1, -2)),
        "pv": lambda: torch.matmul(a, b),
        "ptx": lambda: torch.matmul(a.transpose(-1, -2), b),
        DENSE: lambda: torch.matmul(a, b),
    }
    seconds = common.time_call(products[name], repeats=repeats)
    return seconds, products[name]().float().numpy()


def _onednn_product(
    lhs: jax.Array, rhs: jax.Array, name: str, repeats: int
) -> tuple[float, np.ndarray] | None:
    """(median seconds, float32 result) of the same product through oneDNN's batched matmul,
    called from a jitted program; None where it is unavailable."""
    if backend_tuning.custom_call_unavailable("onednn", lhs.dtype) is not None:
        return None

    def product(a: jax.Array, b: jax.Array) -> jax.Array:
        if name == DENSE:  # [B * N, H * K] x [H * K, 4 * H * K], given a unit batch axis.
            return onednn_matmul.batched_matmul(a[None], b[None])[0]
        # [B, H, ., .] operands in the attention core's layouts.
        lhs_t, rhs_t = CUSTOM_CALL_LAYOUTS[FORMS[name][0]]
        return onednn_matmul.batched_matmul(a, b, lhs_transposed=lhs_t, rhs_transposed=rhs_t)

    fn = jax.jit(product)
    seconds = common.time_call(lambda: fn(lhs, rhs), repeats=repeats)
    return seconds, np.asarray(fn(lhs, rhs))


def _operands(
    name: str, batch: int, tokens: int, heads: int, head_dim: int
) -> tuple[np.ndarray, np.ndarray]:
    """Random float32 operands of the form `name` (`FORMS` or `DENSE`)."""
    rng = np.random.default_rng(0)
    if name == DENSE:
        width = heads * head_dim
        shapes = ((batch * tokens, width), (width, 4 * width))
    else:
        shapes = tuple((batch, heads, *s) for s in FORMS[name][1](tokens, head_dim))
    return tuple(rng.standard_normal(s, dtype=np.float32) for s in shapes)


def measure(name: str, dtype: str, shape: tuple[int, int, int, int], repeats: int) -> dict:
    """One row: the form `name` in `dtype` at `shape` (B, N, H, K), XLA against torch and
    oneDNN."""
    lhs, rhs = _operands(name, *shape)
    spec = DENSE_SPEC if name == DENSE else FORMS[name][0]
    low_precision = jnp.dtype(dtype) != jnp.float32
    einsum = einsum_f32_materialised if low_precision and name != DENSE else einsum_f32
    fn = jax.jit(lambda a, b: einsum(spec, a, b))
    a, b = (jnp.asarray(x, dtype) for x in (lhs, rhs))
    got = np.asarray(fn(a, b))
    want = np.einsum(spec, np.asarray(a, np.float32), np.asarray(b, np.float32))
    seconds, busy = _time_xla(lambda: fn(a, b), repeats)
    # torch gets the operands as rounded to `dtype`, so both sides multiply the same values.
    rounded = (np.array(x, np.float32) for x in (a, b))  # Writable copies, as torch wants.
    torch_result = _torch_product(*rounded, name, dtype, repeats)
    torch_s = None if torch_result is None else torch_result[0]
    onednn_result = _onednn_product(a, b, name, repeats)
    onednn_s = None if onednn_result is None else onednn_result[0]
    lhs_spec, output_spec = spec.split(",")[0], spec.split("->")[1]
    contracted = [size for index, size in zip(lhs_spec, lhs.shape) if index not in output_spec]
    flops = 2.0 * float(np.prod(got.shape)) * float(np.prod(contracted))
    return {
        "matmul": name,
        "dtype": dtype,
        "xla_ms": 1e3 * seconds,
        "xla_gflops": flops / seconds / 1e9,
        "xla_cores_busy": busy,
        "torch_ms": None if torch_s is None else 1e3 * torch_s,
        "torch_gflops": None if torch_s is None else flops / torch_s / 1e9,
        "torch_vs_xla": None if torch_s is None else seconds / torch_s,
        "max_rel_diff": common.relative_difference(got, want),
        "torch_max_rel_diff": (
            None if torch_result is None else common.relative_difference(torch_result[1], want)
        ),
        "onednn_ms": None if onednn_s is None else 1e3 * onednn_s,
        "onednn_gflops": None if onednn_s is None else flops / onednn_s / 1e9,
        "onednn_vs_xla": None if onednn_s is None else seconds / onednn_s,
        "onednn_max_rel_diff": (
            None if onednn_result is None else common.relative_difference(onednn_result[1], want)
        ),
    }


def main(argv=None) -> None:
    parser = common.attention_parser(__doc__, batch=4, repeats=20)
    args = parser.parse_args(argv)
    shape = (args.batch, args.tokens, args.heads, args.head_dim)
    rows = [
        measure(name, dtype, shape, args.repeats)
        for dtype in args.dtypes
        for name in (*FORMS, DENSE)
    ]
    # Only the first line of a reason: a failed build's compiler output would break the header.
    reasons = {
        d: backend_tuning.custom_call_unavailable("onednn", d) or "built" for d in args.dtypes
    }
    for reason in {r for r in reasons.values() if "\n" in r}:
        print(reason, file=sys.stderr)
    onednn = {d: reason.splitlines()[0] for d, reason in reasons.items()}
    common.report(rows, as_json=args.json, header={"bnhk": list(shape), "onednn": onednn})


if __name__ == "__main__":
    main()
