"""oneDNN's matmuls inside a jitted JAX program on CPU (an XLA FFI custom call): the model's
dense layers and the attention core's six products under `matmul_library="onednn"`
(`models.matmul`, `models.attention_core`).

Why: on an Intel Xeon host with AMX (RESULTS.md, session 30) XLA:CPU ran the dense layers'
bfloat16 matmuls of a ViT-B/16 micro-batch 1.4x slower than torch's (121.7 against 84.3 ms for
the twelve forward and backward matmuls of one layer), and the same matmuls by oneDNN, the
library torch's CPU matmuls use, took 86.9 ms (one forward product checked: bitwise XLA's
float32 sums). The
attention's small batched products ([B, H, 197, 64] x [B, H, 64, 197] and the like) ran
3.3-9.5x faster in bfloat16 and 2.1-3.4x in float32 than XLA's (`python -m
benchmarks.attention_matmuls`; sessions 28 and 29). Float32 dense matmuls by oneDNN were not
faster than XLA's. The model uses it when asked (`matmul_library="onednn"`), and by default
for bfloat16 on a CPU with AMX where it can be built (`models.backend_tuning`, item 5).

Optional: it needs g++ and oneDNN's CPU library and headers from PyPI (`onednn-cpu-gomp`,
`onednn-devel-cpu-gomp`: the `onednn` extra) in this interpreter's prefix, and the system's GNU
OpenMP (`libgomp.so.1`). `load()` compiles the source (`native/onednn_batched_matmul.cc`) on first
use into the user's cache (`native_matmul.build`), and says why not where it cannot;
`unavailable(dtype)` adds whether this CPU has oneDNN's matmul for the dtype. The custom call
exists on CPU only and is not a stable export target: programs compiled for other devices or
exported never contain it (`models.backend_tuning`).
"""

from __future__ import annotations

import ctypes
import functools
import sys
import threading
from pathlib import Path

import jax
import jax.numpy as jnp

from vit_jax.models import native_matmul

SOURCE = native_matmul.NATIVE / "onednn_batched_matmul.cc"
TARGET = "vit_jax_onednn_batched_matmul"
INSTALL_HINT = "pip install onednn-cpu-gomp onednn-devel-cpu-gomp (the `onednn` extra)"
VERSION_HEADER = "oneapi/dnnl/dnnl_version.h"  # Part of the build's cache key.
DTYPES = (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float32))
# dtype -> whether this CPU has oneDNN's matmul for it; filled by `load()`.
_supported: dict[jnp.dtype, bool] = {}
# Whether oneDNN runs with AMX on this CPU; set by `load()`.
_uses_amx = False


# One build and registration at a time: threads of one process may build the model at once.
_load_lock = threading.Lock()


def load() -> str | None:
    """Builds (once per source and toolchain), loads and registers the custom call in this
    process. Returns None when it is ready, else why it is not (never raises)."""
    with _load_lock:
        return _load()


@functools.cache
def _load() -> str | None:
    include, lib = Path(sys.prefix) / "include", Path(sys.prefix) / "lib"
    needed = (include / "dnnl.hpp", include / VERSION_HEADER, lib / "libdnnl.so")
    if not all(path.is_file() for path in needed):
        return f"oneDNN is not installed in {sys.prefix}: {INSTALL_HINT}"
    _, reason = native_matmul.build_and_register(
        "oneDNN", SOURCE, include, [f"-L{lib}", "-ldnnl", f"-Wl,-rpath,{lib}"],
        [include / VERSION_HEADER], TARGET, "OnednnBatchedMatmul", prepare=_read_cpu_support,
    )  # fmt: skip
    return reason


def _read_cpu_support(handle: ctypes.CDLL) -> None:
    """What oneDNN can do on this CPU, read once at load."""
    global _uses_amx
    for dtype in DTYPES:
        _supported[dtype] = bool(handle.OnednnSupportsMatmul(int(dtype == jnp.bfloat16)))
    _uses_amx = bool(handle.OnednnUsesAmx())


def unavailable(dtype: object) -> str | None:
    """None when `batched_matmul` runs for `dtype` operands here, else why it does not."""
    reason = load()
    if reason is not None:
        return reason
    if jnp.dtype(dtype) not in DTYPES:
        return f"only bfloat16 and float32 operands, not {jnp.dtype(dtype)}"
    if not _supported[jnp.dtype(dtype)]:
        return f"oneDNN has no {jnp.dtype(dtype)} matmul on this CPU (AVX-512 or AVX2-VNNI-2)"
    return None


def uses_amx() -> bool:
    """Whether the custom call is ready here and oneDNN runs with AMX on this CPU (Intel's
    matrix tiles: Xeon Sapphire Rapids and later, enabled by the OS)."""
    return load() is None and _uses_amx


def batched_matmul(
    lhs: jax.Array, rhs: jax.Array, *, lhs_transposed: bool = False, rhs_transposed: bool = False
) -> jax.Array:
    """`lhs [..., M, K] @ rhs [..., K, N] -> [..., M, N]` float32, by oneDNN; `lhs_transposed`
    takes lhs as `[..., K, M]`, `rhs_transposed` rhs as `[..., N, K]` (no copy). The leading
    (batch) axes must be equal, not broadcast. Both operands bfloat16 or both float32;
    accumulates in float32, as `matmul.einsum_f32_materialised` does. Under `jax.vmap` the
    mapped axis becomes one more batch axis. No derivative of its own: `dense`'s and the
    attention core's VJPs call it for the backward products too."""
    return native_matmul.batched_matmul(
        "oneDNN", TARGET, unavailable, lhs, rhs, lhs_transposed=lhs_transposed,
        rhs_transposed=rhs_transposed,
    )  # fmt: skip


# `x [T, I] @ kernel [I, O] -> [T, O]` float32 by oneDNN, differentiable in reverse mode
# (`native_matmul.dense_with_vjp`).
dense = native_matmul.dense_with_vjp(batched_matmul)
