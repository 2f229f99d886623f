"""Shared helpers of the benchmark scripts: timing, FLOP counts, the in-run matmul peak, and
printing results as a table or JSON. Benchmarks report ratios measured side by side in one run,
never absolute numbers compared across runs."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
import numpy as np

K = TypeVar("K")  # The row keys of `round_robin_seconds`.

# Source for a child process that measures its own memory (Linux): `status(field)` is a
# /proc/self/status field in bytes (VmRSS: now, VmHWM: the peak), `reset_peak()` sets the peak
# back to the current RSS.
PEAK_RSS_CODE = """
def status(field):
    for line in open('/proc/self/status'):
        if line.startswith(field + ':'):
            return int(line.split()[1]) * 1024

def reset_peak():
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')
"""


def model_parser(doc: str, models: Sequence[str]) -> argparse.ArgumentParser:
    """The command line of a benchmark over registered models: `--models` (default `models`),
    `--image_size` (224) and `--json`, described by the first line of `doc`."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(models))
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--json", action="store_true")
    return parser


def attention_parser(doc: str, *, batch: int, repeats: int) -> argparse.ArgumentParser:
    """The command line of a benchmark of the attention core at ViT-B/16's shape: `--batch`
    (default `batch`), `--tokens` (197), `--heads` (12), `--head_dim` (64), `--dtypes` (bfloat16
    and float32), `--repeats` (default `repeats`) and `--json`, described by the first line of
    `doc`."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--batch", type=int, default=batch)
    parser.add_argument("--tokens", type=int, default=197)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--head_dim", type=int, default=64)
    parser.add_argument("--dtypes", nargs="+", default=["bfloat16", "float32"])
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--json", action="store_true")
    return parser


def relative_difference(got: np.ndarray, want: np.ndarray) -> float:
    """The largest absolute difference of `got` from `want`, relative to `want`'s largest
    magnitude: one scale for the whole tensor, so near-zero entries do not blow it up."""
    return float(np.abs(got - want).max() / np.abs(want).max())


def time_call(fn: Callable[[], Any], *, warmup: int = 2, repeats: int = 5) -> float:
    """Median wall seconds of `fn()` (outputs blocked on), after `warmup` untimed calls."""
    return statistics.median(seconds_each(fn, warmup=warmup, repeats=repeats))


def seconds_each(fn: Callable[[], Any], *, warmup: int, repeats: int) -> list[float]:
    """Wall seconds of each of `repeats` calls of `fn()` (outputs blocked on), after `warmup`
    untimed calls."""
    for _ in range(warmup):
        jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return times


def round_robin_seconds(
    runs: Mapping[K, Callable[[int], list[float]]], *, rounds: int, steps: int, pause: float = 0.0
) -> dict[K, list[float]]:
    """Seconds of every timed step, by row: `rounds` rounds in which each row's `runs[row](steps)`
    times `steps` steps in turn, each round starting one row later than the one before, so that
    a machine whose speed drifts (this 2-core VM's does) slows every row alike. `pause` seconds
    before each row let the previous row's threads stop spinning for work."""
    order = list(runs)
    seconds: dict[K, list[float]] = {row: [] for row in order}
    for round_index in range(rounds):
        shift = round_index % len(order)
        for row in order[shift:] + order[:shift]:
            time.sleep(pause)
            seconds[row] += runs[row](steps)
    return seconds


def round_robin_train_steps(
    runners: Mapping[K, Callable[[], Any]], *, rounds: int
) -> dict[K, list[float]]:
    """Seconds of every timed training step, by row: `round_robin_seconds` over each row's
    `runners[row]()` (one step, returning its loss), two steps a turn after an untimed one, as in
    `benchmarks.torch_compare`. Then one more step per row: a loss that is not finite (a NaN
    stays in the parameters once it reaches them) stops the run with the row's name, so that a
    diverged run's steps are never reported as if they were fine."""
    runs = {
        name: lambda n, run=run: seconds_each(run, warmup=1, repeats=n)
        for name, run in runners.items()
    }
    times = round_robin_seconds(runs, rounds=rounds, steps=2)
    for name, run in runners.items():
        loss = float(run())
        if not np.isfinite(loss):
            raise SystemExit(f"{name}: the loss became {loss} during the timing")
    return times


def with_xla_matmuls(model: Any) -> Any:
    """`model` (a `VisionTransformer`) with XLA's matmuls, for counting its FLOPs: XLA's cost
    analysis and the jaxpr count (`vit_jax.plan.flops`) do not see into the custom calls
    (oneDNN's, OpenBLAS's, MKL's) that `matmul_library="auto"` may take on CPU. Who multiplies does
    not change the count."""
    return model.clone(matmul_library="xla")


def compiled_flops(jitted: Any, *args: Any) -> float:
    """FLOPs of one call according to XLA's cost analysis of the compiled program."""
    return flops_of(jitted.lower(*args).compile())


def flops_of(compiled: Any) -> float | None:
    """FLOPs of one call of a compiled program, by XLA's cost analysis (None if it gives none).

    Not on GPUs: there the matmuls are library calls (cuBLAS, cuDNN) that the analysis does
    not count (a ViT-B/16 training step: 4.7 GFLOP per image, against 98 on CPU). Count from
    the jaxpr there (`vit_jax.plan.flops`).
    """
    analysis = compiled.cost_analysis()
    if isinstance(analysis, list):  # Older jax returned one dict per device program.
        analysis = analysis[0]
    return float(analysis["flops"]) if analysis and "flops" in analysis else None


def matmul_peak_gflops(dtype: Any = jnp.float32, size: int = 2048, repeats: int = 10) -> float:
    """XLA's own square matmul throughput on this machine now (float32 accumulation).

    The fastest of `repeats` calls after a warm-up: a peak, so that a slow first call (thread
    pool start, page faults) cannot lower the denominator of the ratios and flatter them.
    """
    key_a, key_b = jax.random.split(jax.random.key(0))
    a = jax.random.normal(key_a, (size, size)).astype(dtype)
    b = jax.random.normal(key_b, (size, size)).astype(dtype)
    matmul = jax.jit(lambda x, y: jnp.matmul(x, y, preferred_element_type=jnp.float32))
    for _ in range(3):
        jax.block_until_ready(matmul(a, b))
    seconds = min(time_call(lambda: matmul(a, b), warmup=0, repeats=1) for _ in range(repeats))
    return 2 * size**3 / seconds / 1e9


def environment() -> dict[str, Any]:
    return {
        "date": time.strftime("%Y-%m-%d"),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "devices": [d.device_kind for d in jax.devices()][:1],
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        # glibc's huge pages for XLA:CPU's buffers, set by the command lines' re-exec or by hand.
        "glibc_tunables": os.environ.get("GLIBC_TUNABLES") or "-",
    }


def report(rows: list[dict[str, Any]], *, as_json: bool, header: dict[str, Any]) -> None:
    if as_json:
        print(json.dumps({"environment": environment(), **header, "rows": rows}, indent=2))
        return
    for key, value in {**environment(), **header}.items():
        print(f"# {key}: {value}")
    if not rows:
        return
    columns = list(dict.fromkeys(key for row in rows for key in row))  # Union, first-seen order.
    widths = {c: max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(_fmt(row.get(c)).ljust(widths[c]) for c in columns))


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.1f}"
    return str(value)
