"""models.onednn_matmul and models.cblas_matmul (OpenBLAS, MKL): each library's batched matmul as an
XLA custom call gives NumPy's products in every operand layout (OpenBLAS's also when it splits one
matrix into row or column blocks), with any number of batch axes and under `jax.vmap`, also with
several calls in one program, and refuses bad operands with a clear error."""

from __future__ import annotations

import ctypes
import importlib.metadata
import shutil
from pathlib import PurePosixPath

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.models import custom_calls
from tests.models.custom_calls import BFLOAT16, FLOAT32, LIBRARY_DTYPES
from vit_jax.models import cblas_matmul, native_matmul, onednn_matmul
from vit_jax.models.backend_tuning import CUSTOM_CALLS

LIBRARIES = list(CUSTOM_CALLS)


@pytest.mark.parametrize("library, dtype", LIBRARY_DTYPES)
@pytest.mark.parametrize("lhs_transposed", [False, True])
@pytest.mark.parametrize("rhs_transposed", [False, True])
@pytest.mark.parametrize(
    "shape",
    # One matrix, taller than wide, then wider than tall: OpenBLAS's call splits its rows, then
    # its columns, into pieces for XLA's threads (a batch of matrices is split by matrix).
    [(3, 5, 7, 4), (8, 197, 64, 197), (1, 301, 40, 23), (1, 23, 40, 301)],
    ids=["tiny", "vit", "rows", "columns"],
)
def test_products_in_every_layout(library, dtype, lhs_transposed, rhs_transposed, shape):
    custom_calls.require(dtype, library)
    groups, rows, inner, cols = shape
    rng = np.random.default_rng(0)
    lhs = jnp.asarray(rng.standard_normal((groups, rows, inner)), dtype)  # [G, M, K]
    rhs = jnp.asarray(rng.standard_normal((groups, inner, cols)), dtype)  # [G, K, N]
    want = np.einsum("gmk,gkn->gmn", np.asarray(lhs, np.float32), np.asarray(rhs, np.float32))
    a = jnp.swapaxes(lhs, 1, 2) if lhs_transposed else lhs
    b = jnp.swapaxes(rhs, 1, 2) if rhs_transposed else rhs
    call = jax.jit(
        lambda a, b: CUSTOM_CALLS[library].batched_matmul(
            a, b, lhs_transposed=lhs_transposed, rhs_transposed=rhs_transposed
        )
    )
    got = call(a, b)
    assert got.dtype == jnp.float32 and got.shape == (groups, rows, cols)
    # Products of bfloat16 values are exact in float32: only the summation order differs.
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("library, dtype", LIBRARY_DTYPES)
def test_batch_axes_and_vmap(library, dtype):
    # [B, H, ., .] as the attention core passes them, and a vmapped axis on top.
    custom_calls.require(dtype, library)
    rng = np.random.default_rng(2)
    lhs = jnp.asarray(rng.standard_normal((3, 2, 4, 5, 6)), dtype)  # [V, B, H, M, K]
    rhs = jnp.asarray(rng.standard_normal((3, 2, 4, 7, 6)), dtype)  # [V, B, H, N, K]
    want = np.einsum("vbhmk,vbhnk->vbhmn", np.asarray(lhs, np.float32), np.asarray(rhs, np.float32))
    product = lambda a, b: CUSTOM_CALLS[library].batched_matmul(a, b, rhs_transposed=True)
    np.testing.assert_allclose(np.asarray(jax.jit(product)(lhs, rhs)), want, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(np.asarray(jax.vmap(product)(lhs, rhs)), want, rtol=1e-5, atol=1e-4)
    # One operand mapped, the other shared: the shared one is broadcast to the mapped size.
    shared = jax.vmap(product, in_axes=(0, None))(lhs, rhs[0])
    want = np.einsum(
        "vbhmk,bhnk->vbhmn", np.asarray(lhs, np.float32), np.asarray(rhs[0], np.float32)
    )
    np.testing.assert_allclose(np.asarray(shared), want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("lhs, rhs", [((2, 3, 0), (2, 0, 4)), ((0, 3, 5), (0, 5, 4))])
def test_empty_operands(library, lhs, rhs):
    # An empty contraction is zeros; an empty batch is an empty result.
    custom_calls.require(jnp.float32, library)
    ones = lambda shape: jnp.ones(shape, jnp.float32)
    got = CUSTOM_CALLS[library].batched_matmul(ones(lhs), ones(rhs))
    np.testing.assert_array_equal(np.asarray(got), np.zeros((*lhs[:2], rhs[2]), np.float32))


@pytest.mark.parametrize(
    "library, dtype", [("onednn", BFLOAT16), ("openblas", FLOAT32), ("mkl", FLOAT32)]
)
def test_concurrent_calls_are_right(library, dtype):
    # Independent calls in one program may run on several XLA threads at once: oneDNN shares
    # one scratchpad between primitives unless built for concurrent execution, so each call
    # brings its own; OpenBLAS's calls hand pieces to the same threads that may be running
    # other calls. This checks the results of such a program, all three layouts of the
    # attention core mixed, and single matrices (which OpenBLAS splits into row or column
    # blocks) as a dense layer's two backward products run; oneDNN's did not fail with a
    # shared scratchpad either.
    custom_calls.require(dtype, library)
    rng = np.random.default_rng(1)

    def operands(*shape):
        return jnp.asarray(rng.standard_normal(shape), dtype)

    calls = []  # (lhs, rhs, lhs_transposed, rhs_transposed, NumPy's spec)
    for _ in range(3):
        calls += [
            (operands(48, 197, 64), operands(48, 197, 64), False, True, "gmk,gnk->gmn"),
            (operands(48, 197, 197), operands(48, 197, 64), False, False, "gmk,gkn->gmn"),
            (operands(48, 197, 197), operands(48, 197, 64), True, False, "gkm,gkn->gmn"),
            (operands(1, 301, 96), operands(1, 40, 96), False, True, "gmk,gnk->gmn"),  # Rows.
            (operands(1, 301, 23), operands(1, 301, 96), True, False, "gkm,gkn->gmn"),  # Columns.
        ]
    flags = [call[2:4] for call in calls]
    program = jax.jit(
        lambda pairs: [
            CUSTOM_CALLS[library].batched_matmul(a, b, lhs_transposed=lt, rhs_transposed=rt)
            for (a, b), (lt, rt) in zip(pairs, flags)
        ]
    )
    wants = [
        np.einsum(c[4], np.asarray(c[0], np.float32), np.asarray(c[1], np.float32)) for c in calls
    ]
    for _ in range(3):
        for got, want in zip(program([call[:2] for call in calls]), wants):
            np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize(
    "lhs, rhs, flags, message",
    [
        ((1, 2, 3), (1, 3, 2), {}, None),  # Fine: the reference for the others.
        ((2, 2, 3), (1, 3, 2), {}, "disagree on the batch axes"),
        ((1, 1, 2, 3), (1, 2, 3, 2), {}, "disagree on the batch axes"),
        ((1, 2, 3), (1, 1, 3, 2), {}, "one rank >= 3"),
        ((1, 2, 3), (1, 4, 2), {}, "contracted size"),
        ((1, 2, 3), (1, 2, 3), {"rhs_transposed": False}, "contracted size"),
        ((1, 2, 3), (1, 3, 2), {"lhs_transposed": True}, "contracted size"),
        ((2, 3), (1, 3, 2), {}, "one rank >= 3"),
    ],
)
@pytest.mark.parametrize("library", LIBRARIES)
def test_bad_operands_get_a_clear_error(library, lhs, rhs, flags, message):
    custom_calls.require(jnp.float32, library)
    a, b = jnp.ones(lhs, jnp.float32), jnp.ones(rhs, jnp.float32)
    if message is None:
        assert CUSTOM_CALLS[library].batched_matmul(a, b, **flags).shape == (1, 2, 2)
        return
    with pytest.raises(ValueError, match=message):
        CUSTOM_CALLS[library].batched_matmul(a, b, **flags)


def test_dtypes_are_checked_before_running():
    custom_calls.require(jnp.float32, "onednn")
    with pytest.raises(ValueError, match="one dtype"):
        onednn_matmul.batched_matmul(jnp.zeros((1, 2, 3), jnp.bfloat16), jnp.zeros((1, 3, 2)))
    half = jnp.zeros((1, 2, 2), jnp.float16)
    with pytest.raises(RuntimeError, match="only bfloat16 and float32"):
        onednn_matmul.batched_matmul(half, half)


@pytest.mark.parametrize("library", ["openblas", "mkl"])
def test_cblas_libraries_take_float32_only_and_describe_themselves(library):
    custom_calls.require(jnp.float32, library)
    blas = CUSTOM_CALLS[library]
    bf16 = jnp.zeros((1, 2, 2), jnp.bfloat16)
    unavailable = rf"{blas.name}'s batched matmul is unavailable: .*float32 operands only"
    with pytest.raises(RuntimeError, match=unavailable):
        blas.batched_matmul(bf16, bf16)
    with pytest.raises(ValueError, match="one dtype"):
        blas.batched_matmul(jnp.zeros((1, 2, 3), jnp.bfloat16), jnp.zeros((1, 3, 2)))
    if library == "openblas":  # What "auto" reads (`backend_tuning.OPENBLAS_AUTO_CORES`).
        assert blas.describe() not in ("", "Unknown")
    else:  # MKL's version string; set up single-threaded, so Intel's OpenMP is never loaded.
        assert blas.describe().startswith("Intel(R)")
        ones = jnp.ones((2, 64, 64), jnp.float32)
        np.testing.assert_array_equal(jax.jit(blas.batched_matmul)(ones, ones), 64 * ones)
        with open("/proc/self/maps") as maps:  # MKL loads its threading layer on first use.
            loaded = maps.read()
        assert "libmkl_sequential" in loaded
        assert "libiomp5" not in loaded and "libmkl_intel_thread" not in loaded


def test_a_missing_cblas_library_says_how_to_install_it(monkeypatch):
    """A library whose wheel is missing: its reason names the extra, and nothing is built."""
    missing = cblas_matmul.CblasLibrary(
        "Missing", "mkl_binding.h", "vit_jax_test_missing", "pip install it (a test)",
        lambda: "Missing is not installed (a test)",
    )  # fmt: skip
    assert missing.load() == "Missing is not installed (a test): pip install it (a test)"
    assert missing.unavailable(jnp.float32) == missing.load()
    assert missing.describe() == ""


@pytest.mark.parametrize("library, dtype", LIBRARY_DTYPES)
def test_dense_and_its_gradient_are_numpys(library, dtype):
    """`dense`: `x @ kernel` in float32, and a backward pass that multiplies the cotangent,
    cast to the operands' dtype, with each operand (float32 sums of exact products)."""
    custom_calls.require(dtype, library)
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.standard_normal((37, 24)), dtype)  # [T, I]
    kernel = jnp.asarray(rng.standard_normal((24, 40)), dtype)  # [I, O]
    d_out = jnp.asarray(rng.standard_normal((37, 40)), jnp.float32)  # [T, O]
    out, vjp = jax.vjp(CUSTOM_CALLS[library].dense, x, kernel)
    d_x, d_kernel = jax.jit(vjp)(d_out)
    as32 = lambda a: np.asarray(a, np.float32)
    d_low = as32(d_out.astype(dtype))
    assert out.dtype == jnp.float32 and (d_x.dtype, d_kernel.dtype) == (dtype, dtype)
    np.testing.assert_allclose(np.asarray(out), as32(x) @ as32(kernel), rtol=1e-5, atol=1e-4)
    # The gradients are returned in the operands' dtype: compare after the same rounding.
    rtol = 1e-5 if dtype == jnp.float32 else 1e-2
    np.testing.assert_allclose(as32(d_x), d_low @ as32(kernel).T, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(as32(d_kernel), as32(x).T @ d_low, rtol=rtol, atol=rtol)


def test_building_a_custom_call_says_why_it_cannot_and_never_raises(tmp_path, monkeypatch):
    """`native_matmul.build_and_register`, which both libraries' `load()` call: a missing
    compiler, source, build file or handler, a failing compile and a failing setup each come back
    as a reason naming the problem; a source that builds is cached and reused, not built again."""
    if shutil.which("g++") is None:
        pytest.skip("no g++ on PATH")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    good = tmp_path / "good.cc"
    good.write_text('extern "C" int Answer() { return 42; }\n')
    bad = tmp_path / "bad.cc"
    bad.write_text("this is not C++;\n")
    register = lambda source, *key_files, handler="Answer", prepare=None: (
        native_matmul.build_and_register(
            "Test", source, tmp_path, [], list(key_files), "vit_jax_test_target", handler, prepare
        )
    )

    def reason(*args, **kwargs):
        handle, why = register(*args, **kwargs)
        assert handle is None
        return why

    assert "missing: reinstall vit_jax" in reason(tmp_path / "absent.cc")
    assert "cannot read" in reason(good, tmp_path / "absent_version.h")
    assert "building bad.cc failed" in reason(bad)
    with monkeypatch.context() as patched:
        patched.setattr(shutil, "which", lambda name: None)
        assert reason(good) == "no g++ on PATH to build the Test custom call"
    assert "has no handler Missing" in reason(good, handler="Missing")

    def failing_setup(library):
        assert library.Answer() == 42  # Handed the loaded library.
        raise RuntimeError("the library refused its settings")

    registered = []
    with monkeypatch.context() as patched:
        patched.setattr(jax.ffi, "register_ffi_target", lambda *args, **kw: registered.append(args))
        assert reason(good, prepare=failing_setup).endswith(
            "failed: RuntimeError: the library refused its settings"
        )
    assert registered == []  # A library whose setup failed is never registered.
    # What was built loads and runs (`Answer` is not an FFI handler: it is never registered).
    built, why = native_matmul.build(shutil.which("g++"), good, tmp_path, [], [])
    assert why is None and ctypes.CDLL(str(built)).Answer() == 42
    modified = built.stat().st_mtime_ns
    again, why = native_matmul.build(shutil.which("g++"), good, tmp_path, [], [])
    assert (again, why) == (built, None) and again.stat().st_mtime_ns == modified
    assert list(built.parent.glob("*.tmp")) == []  # No partial build left behind.


def test_mkl_is_found_through_its_wheels_file_list(tmp_path, monkeypatch):
    """MKL's runtime library is the newest `libmkl_rt.so.N` its wheel lists (by N as a number);
    a listed file that is not there, no such file, or no wheel each give a reason."""

    class Listed(PurePosixPath):  # As importlib.metadata lists a wheel's files.
        def locate(self):
            return tmp_path / self.name

    listed = [Listed("../../libmkl_rt.so.9"), Listed("../../libmkl_rt.so.10")]
    monkeypatch.setattr(importlib.metadata, "files", lambda name: listed)
    assert cblas_matmul._mkl_build_inputs() == (
        f"MKL's wheel lists {tmp_path / 'libmkl_rt.so.10'}, which is missing"
    )
    (tmp_path / "libmkl_rt.so.10").touch()
    _, link_flags, key_files = cblas_matmul._mkl_build_inputs()
    assert str(tmp_path / "libmkl_rt.so.10") in link_flags and key_files == []
    monkeypatch.setattr(importlib.metadata, "files", lambda name: [Listed("libmkl_core.so.3")])
    assert cblas_matmul._mkl_build_inputs() == "MKL's wheel lists no libmkl_rt.so.N"

    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "files", not_installed)
    assert cblas_matmul._mkl_build_inputs().startswith("MKL is not installed")
