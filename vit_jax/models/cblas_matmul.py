"""Float32 matmuls by a CBLAS library's sgemm inside a jitted JAX program on CPU (an XLA FFI
custom call): the model's dense layers and the attention core's six products under
`matmul_library="openblas"` (`OPENBLAS`) or `"mkl"` (`MKL`) (`models.matmul`,
`models.attention_core`). One C++ source (`native/cblas_batched_matmul.cc`) is built once per
library, against its binding header (`native/openblas_binding.h`, `native/mkl_binding.h`).

Why: on the Intel Xeon host (AVX-512, 2 cores; RESULTS.md, sessions 32-33) XLA:CPU's float32
matmuls of a ViT-B/16 layer ran at 94-135 GFLOP/s, against about 185 for torch's (MKL), 175-190
for MKL's sgemm and 140-175 for OpenBLAS's; oneDNN's float32 matmuls were no faster than XLA's
except in one layout. The library runs single-threaded, its pieces on XLA's own threads
(`native/cblas_batched_matmul.cc` says why). Where each comes from:
- OpenBLAS: the wheel numpy and SciPy build against (`scipy-openblas32`, 8 MB: the `openblas`
  extra).
- MKL: Intel's wheel (`mkl`, about 230 MB to download, 1 GB installed with what it pulls in: the
  `mkl` extra), through its single dynamic library `libmkl_rt`, set to its sequential layer (so
  Intel's OpenMP runtime is never loaded).

Optional: each needs g++ and its wheel. `load()` compiles the source on first use into the
user's cache (`native_matmul.build_and_register`) and says why not where it cannot. Float32
only. The custom call exists on CPU only and is not a stable export target: programs compiled
for other devices or exported never contain it (`models.backend_tuning`).
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.metadata
import re
import threading
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp

from vit_jax.models import native_matmul

SOURCE = native_matmul.NATIVE / "cblas_batched_matmul.cc"

# (the directory of headers to build against, the link flags, the files whose contents join the
# build's cache key), or why the library is not installed (a str).
BuildInputs = tuple[Path, list[str], list[Path]]


def _openblas_build_inputs() -> BuildInputs | str:
    try:
        wheel = importlib.import_module("scipy_openblas32")
        include, lib = Path(wheel.get_include_dir()), Path(wheel.get_lib_dir())
        name = wheel.get_library()  # "scipy_openblas": linked as -lscipy_openblas.
    except (ImportError, AttributeError, OSError, IndexError) as error:
        return f"OpenBLAS is not installed ({error})"
    return include, [f"-L{lib}", f"-l{name}", f"-Wl,-rpath,{lib}"], [include / "openblas_config.h"]


def _mkl_build_inputs() -> BuildInputs | str:
    try:
        files = importlib.metadata.files("mkl") or []
    except importlib.metadata.PackageNotFoundError as error:
        return f"MKL is not installed ({error})"
    # The wheel names it by its ABI version (libmkl_rt.so.2 in 2024, .so.3 in 2026); the build
    # links that file, so a new major version builds again. The newest, should there be several.
    runtime = [file for file in files if re.fullmatch(r"libmkl_rt\.so\.\d+", file.name)]
    if not runtime:
        return "MKL's wheel lists no libmkl_rt.so.N"
    newest = max(runtime, key=lambda file: int(file.name.rsplit(".", 1)[1]))
    library = Path(newest.locate()).resolve()
    if not library.is_file():  # Its data files left out (`pip install --target` does so).
        return f"MKL's wheel lists {library}, which is missing"
    include = native_matmul.NATIVE  # mkl_binding.h declares what it uses: no headers needed.
    return include, [str(library), f"-Wl,-rpath,{library.parent}"], []


class CblasLibrary:
    """One CBLAS library's custom call: `TARGET`, `load`, `unavailable`, `batched_matmul` and
    `dense`, the interface `backend_tuning.CUSTOM_CALLS` expects of each custom call (as
    `models.onednn_matmul` has them)."""

    def __init__(
        self,
        name: str,
        binding: str,
        target: str,
        install_hint: str,
        build_inputs: Callable[[], BuildInputs | str],
    ):
        self.name = name  # As messages name it: "OpenBLAS", "MKL".
        self.binding = binding  # Its header in models/native.
        self.TARGET = target  # The custom call's name in XLA's registry.
        self.install_hint = install_hint
        self._build_inputs = build_inputs
        self._lock = threading.Lock()
        self._loaded: tuple[str | None, str] | None = None  # (why not ready, what it says)
        # `x [T, I] @ kernel [I, O] -> [T, O]` float32, differentiable in reverse mode
        # (`native_matmul.dense_with_vjp`).
        self.dense = native_matmul.dense_with_vjp(self.batched_matmul)

    def load(self) -> str | None:
        """Builds (once per source and toolchain), loads and registers the custom call in this
        process. Returns None when it is ready, else why it is not (never raises)."""
        with self._lock:
            if self._loaded is None:
                self._loaded = self._load()
            return self._loaded[0]

    def _load(self) -> tuple[str | None, str]:
        inputs = self._build_inputs()
        if isinstance(inputs, str):
            return f"{inputs}: {self.install_hint}", ""
        include, link_flags, key_files = inputs
        said = []  # What the library says of itself at its setup.

        def init(handle: ctypes.CDLL) -> None:  # Before any call: single-threaded (the .cc).
            handle.CblasInit.restype = ctypes.c_char_p
            said.append((handle.CblasInit() or b"").decode(errors="replace").strip())

        handle, reason = native_matmul.build_and_register(
            self.name, SOURCE, include, [f'-DBLAS_BINDING="{self.binding}"', *link_flags],
            key_files, self.TARGET, "CblasBatchedMatmul", prepare=init,
        )  # fmt: skip
        if handle is None:
            return reason, ""
        return None, said[0]

    def unavailable(self, dtype: object) -> str | None:
        """None when `batched_matmul` runs for `dtype` operands here, else why it does not."""
        reason = self.load()
        if reason is not None:
            return reason
        if jnp.dtype(dtype) != jnp.float32:
            return f"{self.name}'s custom call takes float32 operands only, not {jnp.dtype(dtype)}"
        return None

    def describe(self) -> str:
        """What the library says of itself once loaded (OpenBLAS: the name of the kernel it runs
        on this CPU, "SkylakeX", "Haswell", "Zen", ...; MKL: its version), or "" where the custom
        call is not ready."""
        return self._loaded[1] if self.load() is None and self._loaded else ""

    def batched_matmul(
        self,
        lhs: jax.Array,
        rhs: jax.Array,
        *,
        lhs_transposed: bool = False,
        rhs_transposed: bool = False,
    ) -> jax.Array:
        """`lhs [..., M, K] @ rhs [..., K, N] -> [..., M, N]` by the library, both operands
        float32; the contract of `onednn_matmul.batched_matmul` otherwise (transposed layouts
        without a copy, equal batch axes, `jax.vmap`, no derivative of its own)."""
        return native_matmul.batched_matmul(
            self.name, self.TARGET, self.unavailable, lhs, rhs, lhs_transposed=lhs_transposed,
            rhs_transposed=rhs_transposed,
        )  # fmt: skip


OPENBLAS = CblasLibrary(
    "OpenBLAS",
    "openblas_binding.h",
    "vit_jax_openblas_batched_matmul",
    "pip install scipy-openblas32 (the `openblas` extra)",
    _openblas_build_inputs,
)
MKL = CblasLibrary(
    "MKL",
    "mkl_binding.h",
    "vit_jax_mkl_batched_matmul",
    "pip install mkl (the `mkl` extra)",
    _mkl_build_inputs,
)
