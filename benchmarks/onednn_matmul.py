"""oneDNN's batched matmul inside a jitted JAX program on CPU (an XLA FFI custom call), for
`benchmarks.attention_matmuls`: is a faster batched small matmul than XLA:CPU's reachable
from inside XLA's runtime, with its threads and buffers, and not only from torch?

Benchmarks only; the model does not use it. Needs g++ and oneDNN's CPU library and headers from
PyPI (`onednn-cpu-gomp`, `onednn-devel-cpu-gomp`: the `dev` extra) in this interpreter's prefix.
The source (`native/onednn_batched_matmul.cc`) is compiled on first use into
`~/.cache/vit_jax/onednn/`, named by a hash of the source, jaxlib's version and oneDNN's path.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import jaxlib

SOURCE = Path(__file__).parent / "native" / "onednn_batched_matmul.cc"
TARGET = "vit_jax_onednn_batched_matmul"
INSTALL_HINT = "pip install onednn-cpu-gomp onednn-devel-cpu-gomp (the `dev` extra)"


@functools.cache
def unavailable() -> str | None:
    """None once the custom call is built and registered, else why it cannot be."""
    compiler = shutil.which("g++")
    include, lib = Path(sys.prefix) / "include", Path(sys.prefix) / "lib"
    if compiler is None:
        return "no g++ on PATH to build the oneDNN custom call"
    if not (include / "dnnl.hpp").is_file() or not (lib / "libdnnl.so").is_file():
        return f"oneDNN is not installed in {sys.prefix}: {INSTALL_HINT}"
    key = hashlib.sha256(SOURCE.read_bytes() + f"{jaxlib.__version__}:{lib}".encode())
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vit_jax" / "onednn"
    library = cache / f"{key.hexdigest()[:16]}.so"
    if not library.is_file():
        try:
            cache.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            return f"cannot create the build cache {cache} ({error}); set XDG_CACHE_HOME"
        partial = library.with_name(f"{library.stem}.{os.getpid()}.tmp")
        command = [
            compiler, "-O2", "-std=c++17", "-shared", "-fPIC", "-w",
            f"-I{include}", f"-I{jax.ffi.include_dir()}", str(SOURCE),
            f"-L{lib}", "-ldnnl", f"-Wl,-rpath,{lib}", "-o", str(partial),
        ]  # fmt: skip
        built = subprocess.run(command, capture_output=True, text=True)
        if built.returncode != 0:
            return f"building {SOURCE.name} failed:\n{built.stderr[-3000:]}"
        os.replace(partial, library)  # Atomic: parallel test workers may build it at once.
    handle = ctypes.cdll.LoadLibrary(str(library))
    jax.ffi.register_ffi_target(
        TARGET, jax.ffi.pycapsule(handle.OnednnBatchedMatmul), platform="cpu"
    )
    return None


def batched_matmul(
    lhs: jax.Array, rhs: jax.Array, *, lhs_transposed: bool = False, rhs_transposed: bool = False
) -> jax.Array:
    """`lhs [G, M, K] @ rhs [G, K, N] -> [G, M, N]` float32, by oneDNN; `lhs_transposed` takes
    lhs as `[G, K, M]`, `rhs_transposed` rhs as `[G, N, K]` (no copy). Both operands bfloat16
    or both float32; accumulates in float32, as `matmul.einsum_f32_materialised` does."""
    reason = unavailable()
    if reason is not None:
        raise RuntimeError(f"oneDNN's batched matmul is unavailable: {reason}")
    if lhs.ndim != 3 or rhs.ndim != 3 or lhs.dtype != rhs.dtype:
        raise ValueError(f"want two [G, ., .] operands of one dtype, got {lhs} and {rhs}")
    rows = lhs.shape[2] if lhs_transposed else lhs.shape[1]
    cols = rhs.shape[1] if rhs_transposed else rhs.shape[2]
    out = jax.ShapeDtypeStruct((lhs.shape[0], rows, cols), jnp.float32)
    call = jax.ffi.ffi_call(TARGET, out)
    return call(lhs, rhs, lhs_transposed=lhs_transposed, rhs_transposed=rhs_transposed)
