"""OpenBLAS's float32 matmuls inside a jitted JAX program on CPU (an XLA FFI custom call): the
model's dense layers and the attention core's six products under `matmul_library="openblas"`
(`models.matmul`, `models.attention_core`).

Why: on the Intel Xeon host (AVX-512, 2 cores; RESULTS.md, session 32) XLA:CPU's float32 matmuls of
a ViT-B/16 layer ran at 94-135 GFLOP/s, against about 185 for torch's (MKL) and 140-175 for
OpenBLAS's sgemm; oneDNN's float32 matmuls were no faster than XLA's except in one layout. In the
model: the forward 1.5x XLA's, the training step 0.98-1.11x (`models.backend_tuning`, item 5).
OpenBLAS comes from PyPI as the wheel numpy and SciPy build against (`scipy-openblas32`, 8 MB: the
`openblas` extra; MKL's wheels are 700 MB installed). The call runs its pieces on XLA's own
threads, OpenBLAS single-threaded (`native/openblas_batched_matmul.cc` says why).

Optional: it needs g++ and the `scipy-openblas32` wheel. `load()` compiles the source on first
use into the user's cache (`native_matmul.build`) and says why not where it cannot. Float32
only. The custom call exists on CPU only and is not a stable export target: programs compiled
for other devices or exported never contain it (`models.backend_tuning`).
"""

from __future__ import annotations

import ctypes
import functools
import importlib
from pathlib import Path

import jax
import jax.numpy as jnp

from vit_jax.models import native_matmul

SOURCE = native_matmul.NATIVE / "openblas_batched_matmul.cc"
TARGET = "vit_jax_openblas_batched_matmul"
INSTALL_HINT = "pip install scipy-openblas32 (the `openblas` extra)"
# OpenBLAS's name of the kernel it runs on this CPU (its "core"), set by `load()`.
_core = ""


@functools.cache
def load() -> str | None:
    """Builds (once per source and toolchain), loads and registers the custom call in this
    process. Returns None when it is ready, else why it is not (never raises)."""
    global _core
    try:
        wheel = importlib.import_module("scipy_openblas32")
        include, lib = Path(wheel.get_include_dir()), Path(wheel.get_lib_dir())
        name = wheel.get_library()  # "scipy_openblas": linked as -lscipy_openblas.
    except (ImportError, AttributeError, OSError, IndexError) as error:
        return f"OpenBLAS is not installed ({error}): {INSTALL_HINT}"
    handle, reason = native_matmul.build_and_register(
        "OpenBLAS", SOURCE, include, [f"-L{lib}", f"-l{name}", f"-Wl,-rpath,{lib}"],
        [include / "openblas_config.h"], TARGET, "OpenblasBatchedMatmul",
    )  # fmt: skip
    if handle is None:
        return reason
    handle.OpenblasInit.restype = ctypes.c_char_p
    _core = (handle.OpenblasInit() or b"").decode()
    return None


def unavailable(dtype: object) -> str | None:
    """None when `batched_matmul` runs for `dtype` operands here, else why it does not."""
    reason = load()
    if reason is not None:
        return reason
    if jnp.dtype(dtype) != jnp.float32:
        return f"OpenBLAS's custom call takes float32 operands only, not {jnp.dtype(dtype)}"
    return None


def core() -> str:
    """OpenBLAS's name for the kernel it runs on this CPU ("SkylakeX", "Haswell", "Zen", ...),
    or "" where the custom call is not ready."""
    return _core if load() is None else ""


def batched_matmul(
    lhs: jax.Array, rhs: jax.Array, *, lhs_transposed: bool = False, rhs_transposed: bool = False
) -> jax.Array:
    """`lhs [..., M, K] @ rhs [..., K, N] -> [..., M, N]` by OpenBLAS, both operands float32;
    the contract of `onednn_matmul.batched_matmul` otherwise (transposed layouts without a
    copy, equal batch axes, `jax.vmap`, no derivative of its own)."""
    return native_matmul.batched_matmul(
        "OpenBLAS", TARGET, unavailable, lhs, rhs, lhs_transposed=lhs_transposed,
        rhs_transposed=rhs_transposed,
    )  # fmt: skip


# `x [T, I] @ kernel [I, O] -> [T, O]` float32 by OpenBLAS, differentiable in reverse mode
# (`native_matmul.dense_with_vjp`).
dense = native_matmul.dense_with_vjp(batched_matmul)
