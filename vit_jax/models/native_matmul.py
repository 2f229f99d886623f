"""What the CPU matmul custom calls share (`models.onednn_matmul`, `models.cblas_matmul`):
building their C++ source on the user's machine, the call itself (one operand contract,
`native/batched_matmul_shapes.h`) and the dense layer's VJP on top of it.

A source is compiled on first use into `$XDG_CACHE_HOME/vit_jax/native/` (default
`~/.cache`), named by a hash of everything the build depends on (the sources, the library's
version header, the command line, the compiler's and jaxlib's versions), so a change of any of
them builds again and an unchanged one never does.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import jaxlib

NATIVE = Path(__file__).parent / "native"


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vit_jax" / "native"


def build(
    compiler: str,
    source: Path,
    include: Path,
    link_flags: Sequence[str],
    key_files: Sequence[Path],
) -> tuple[Path | None, str | None]:
    """(the shared library built from `source` against the library's headers in `include` and
    linked with `link_flags`, None), or (None, why it could not be built). `key_files` (the
    library's version header, say) join the cache key."""
    command = [
        compiler, "-O2", "-std=c++17", "-shared", "-fPIC",
        "-w",  # XLA's FFI headers warn under g++ (-Wreturn-type); the handlers are clean.
        f"-I{NATIVE}", f"-I{include}", f"-I{jax.ffi.include_dir()}", str(source), *link_flags,
    ]  # fmt: skip
    try:
        version = subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout
    except OSError as error:
        return None, f"running {compiler} failed: {error}"
    key = hashlib.sha256()
    try:  # Every shared header: a source may include any of them.
        for part in (source, *sorted(NATIVE.glob("*.h")), *key_files):
            key.update(part.read_bytes())
    except OSError as error:  # A file of the build missing: `load()` never raises.
        return None, f"cannot read {error.filename} to build {source.name}: {error.strerror}"
    key.update(f"{' '.join(command)}\n{version}\n{jaxlib.__version__}".encode())
    library = cache_dir() / f"{source.stem}-{key.hexdigest()[:16]}.so"
    if library.is_file():
        return library, None
    # Named by process and thread: parallel test workers may build at once; each rename is
    # atomic, and the last one wins.
    partial = library.with_name(f"{library.stem}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        library.parent.mkdir(parents=True, exist_ok=True)
        built = subprocess.run([*command, "-o", str(partial)], capture_output=True, text=True)
        if built.returncode != 0:
            return None, f"building {source.name} failed:\n{built.stderr[-3000:]}"
        os.replace(partial, library)
    except OSError as error:
        return None, f"cannot write the build cache {library.parent} ({error}); set XDG_CACHE_HOME"
    finally:
        partial.unlink(missing_ok=True)
    return library, None


def build_and_register(
    library: str,
    source: Path,
    include: Path,
    link_flags: Sequence[str],
    key_files: Sequence[Path],
    target: str,
    handler: str,
    prepare: Callable[[ctypes.CDLL], None] | None = None,
) -> tuple[ctypes.CDLL | None, str | None]:
    """Builds `source` (`build`), loads it into this process, runs `prepare(library)` (its
    one-time setup, before any call can run) and registers its FFI handler symbol `handler` as
    the CPU custom call `target`: (the loaded library, None), or (None, why not; never raises).
    `library` names the library in the reasons ("OpenBLAS")."""
    compiler = shutil.which("g++")
    if compiler is None:
        return None, f"no g++ on PATH to build the {library} custom call"
    if not source.is_file():
        return None, f"its source {source} is missing: reinstall vit_jax"
    built, reason = build(compiler, source, include, link_flags, key_files)
    if built is None:
        return None, reason
    try:
        handle = ctypes.cdll.LoadLibrary(str(built))
    except OSError as error:  # A missing runtime library (libgomp.so.1, say).
        return None, f"loading {built} failed: {error}"
    try:
        symbol = getattr(handle, handler)
    except AttributeError:  # A source from another version of vit_jax, say.
        return None, f"{built} has no handler {handler}: reinstall vit_jax"
    try:
        if prepare is not None:
            prepare(handle)
        jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(symbol), platform="cpu")
    except Exception as error:  # Whatever it is, `load()` reports it instead of raising.
        return None, f"setting up {built} failed: {type(error).__name__}: {error}"
    return handle, None


def batched_matmul(
    library: str,
    target: str,
    unavailable: Callable[[object], str | None],
    lhs: jax.Array,
    rhs: jax.Array,
    *,
    lhs_transposed: bool = False,
    rhs_transposed: bool = False,
) -> jax.Array:
    """`lhs [..., M, K] @ rhs [..., K, N] -> [..., M, N]` float32 by `library`'s registered
    custom call `target`, after `unavailable(dtype)` (None where it runs for the operands'
    dtype, else why not: a RuntimeError) and the operands' shapes (a ValueError); see
    `onednn_matmul.batched_matmul`."""
    if lhs.dtype == rhs.dtype:  # Else the shape check below says so.
        reason = unavailable(lhs.dtype)
        if reason is not None:
            raise RuntimeError(f"{library}'s batched matmul is unavailable: {reason}")
    if lhs.ndim < 3 or rhs.ndim != lhs.ndim or lhs.dtype != rhs.dtype:
        raise ValueError(
            "want two [..., ., .] operands of one rank >= 3 and one dtype, got "
            f"{lhs.dtype}{list(lhs.shape)} and {rhs.dtype}{list(rhs.shape)}"
        )
    batch = lhs.shape[:-2]
    rows, inner = lhs.shape[-2:][::-1] if lhs_transposed else lhs.shape[-2:]
    cols, rhs_inner = rhs.shape[-2:] if rhs_transposed else rhs.shape[-2:][::-1]
    if rhs.shape[:-2] != batch or rhs_inner != inner:
        raise ValueError(
            f"lhs {list(lhs.shape)} (transposed: {lhs_transposed}) and rhs {list(rhs.shape)} "
            f"(transposed: {rhs_transposed}) disagree on the batch axes or on the contracted size"
        )
    call = jax.ffi.ffi_call(
        target,
        jax.ShapeDtypeStruct((*batch, rows, cols), jnp.float32),
        vmap_method="broadcast_all",  # The handler folds every leading axis into one batch.
    )
    return call(lhs, rhs, lhs_transposed=lhs_transposed, rhs_transposed=rhs_transposed)


def dense_with_vjp(product):
    """`dense(x [T, I], kernel [I, O]) -> [T, O]` float32 by `product` (a library's
    `batched_matmul`), differentiable in reverse mode: the backward pass casts the cotangent
    to the operands' dtype and runs both of its products by `product` with float32
    accumulation, as `matmul.einsum_f32` does by XLA."""

    @jax.custom_vjp
    def dense(x: jax.Array, kernel: jax.Array) -> jax.Array:
        return product(x[None], kernel[None])[0]  # [T, O]

    def forward(x, kernel):
        return dense(x, kernel), (x, kernel)

    def backward(residuals, d_out):
        x, kernel = residuals  # [T, I], [I, O]
        d_out = d_out.astype(x.dtype)[None]  # [1, T, O]
        d_x = product(d_out, kernel[None], rhs_transposed=True)[0]  # [T, I]
        d_kernel = product(x[None], d_out, lhs_transposed=True)[0]  # [I, O]
        return d_x.astype(x.dtype), d_kernel.astype(kernel.dtype)

    dense.defvjp(forward, backward)
    return dense
