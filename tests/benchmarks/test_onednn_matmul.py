"""benchmarks/onednn_matmul.py: oneDNN's batched matmul as an XLA custom call gives NumPy's
products in every operand layout, also with several calls in one program, and refuses bad
operands with a clear error."""

from __future__ import annotations

import importlib.metadata
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import onednn_matmul


def _installed() -> bool:
    try:
        for package in ("onednn-cpu-gomp", "onednn-devel-cpu-gomp"):
            importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return False
    return shutil.which("g++") is not None


@pytest.fixture(scope="module")
def loaded():
    """With the `dev` extra and g++ the custom call must build: never a silent skip there."""
    reason = onednn_matmul.load()
    if not _installed():
        assert reason is not None
        pytest.skip(f"oneDNN or g++ not installed: {reason}")
    assert reason is None, reason


def _runs(dtype) -> None:
    reason = onednn_matmul.unavailable(dtype)
    if reason is not None:  # bfloat16 on a CPU without AVX-512 or AVX2-VNNI-2.
        pytest.skip(reason)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float32])
@pytest.mark.parametrize("lhs_transposed", [False, True])
@pytest.mark.parametrize("rhs_transposed", [False, True])
@pytest.mark.parametrize("shape", [(3, 5, 7, 4), (8, 197, 64, 197)], ids=["tiny", "vit"])
def test_products_in_every_layout(loaded, dtype, lhs_transposed, rhs_transposed, shape):
    _runs(dtype)
    groups, rows, inner, cols = shape
    rng = np.random.default_rng(0)
    lhs = jnp.asarray(rng.standard_normal((groups, rows, inner)), dtype)  # [G, M, K]
    rhs = jnp.asarray(rng.standard_normal((groups, inner, cols)), dtype)  # [G, K, N]
    want = np.einsum("gmk,gkn->gmn", np.asarray(lhs, np.float32), np.asarray(rhs, np.float32))
    a = jnp.swapaxes(lhs, 1, 2) if lhs_transposed else lhs
    b = jnp.swapaxes(rhs, 1, 2) if rhs_transposed else rhs
    call = jax.jit(
        lambda a, b: onednn_matmul.batched_matmul(
            a, b, lhs_transposed=lhs_transposed, rhs_transposed=rhs_transposed
        )
    )
    got = call(a, b)
    assert got.dtype == jnp.float32 and got.shape == (groups, rows, cols)
    # Products of bfloat16 values are exact in float32: only the summation order differs.
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-4)


def test_concurrent_calls_are_right(loaded):
    # Independent calls in one program may run on several XLA threads at once, and oneDNN
    # shares one scratchpad between primitives unless built for concurrent execution, so each
    # call brings its own. This checks the results of such a program, all three layouts of
    # the attention core mixed; it did not fail with a shared scratchpad either.
    _runs(jnp.bfloat16)
    rng = np.random.default_rng(1)

    def operands(*shape):
        return jnp.asarray(rng.standard_normal(shape), jnp.bfloat16)

    calls = []  # (lhs, rhs, lhs_transposed, rhs_transposed, NumPy's spec)
    for _ in range(3):
        calls += [
            (operands(48, 197, 64), operands(48, 197, 64), False, True, "gmk,gnk->gmn"),
            (operands(48, 197, 197), operands(48, 197, 64), False, False, "gmk,gkn->gmn"),
            (operands(48, 197, 197), operands(48, 197, 64), True, False, "gkm,gkn->gmn"),
        ]
    flags = [call[2:4] for call in calls]
    program = jax.jit(
        lambda pairs: [
            onednn_matmul.batched_matmul(a, b, lhs_transposed=lt, rhs_transposed=rt)
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
        ((2, 2, 3), (1, 3, 2), {}, "disagree on G"),
        ((1, 2, 3), (1, 4, 2), {}, "contracted size"),
        ((1, 2, 3), (1, 2, 3), {"rhs_transposed": False}, "contracted size"),
        ((1, 2, 3), (1, 3, 2), {"lhs_transposed": True}, "contracted size"),
        ((2, 3), (1, 3, 2), {}, r"\[G, \., \.\]"),
    ],
)
def test_bad_operands_get_a_clear_error(loaded, lhs, rhs, flags, message):
    _runs(jnp.float32)
    a, b = jnp.ones(lhs, jnp.float32), jnp.ones(rhs, jnp.float32)
    if message is None:
        assert onednn_matmul.batched_matmul(a, b, **flags).shape == (1, 2, 2)
        return
    with pytest.raises(ValueError, match=message):
        onednn_matmul.batched_matmul(a, b, **flags)


def test_dtypes_are_checked_before_running(loaded):
    with pytest.raises(ValueError, match="one dtype"):
        onednn_matmul.batched_matmul(jnp.zeros((1, 2, 3), jnp.bfloat16), jnp.zeros((1, 3, 2)))
    half = jnp.zeros((1, 2, 2), jnp.float16)
    with pytest.raises(RuntimeError, match="only bfloat16 and float32"):
        onednn_matmul.batched_matmul(half, half)
