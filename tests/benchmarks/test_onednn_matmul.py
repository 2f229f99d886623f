"""benchmarks/onednn_matmul.py: oneDNN's batched matmul as an XLA custom call gives NumPy's
products in every operand layout, also when XLA runs several calls at once."""

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
def built():
    """With the `dev` extra and g++ the custom call must build: never a silent skip there."""
    reason = onednn_matmul.unavailable()
    if not _installed():
        assert reason is not None
        pytest.skip(f"oneDNN or g++ not installed: {reason}")
    assert reason is None, reason


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float32])
@pytest.mark.parametrize("lhs_transposed", [False, True])
@pytest.mark.parametrize("rhs_transposed", [False, True])
def test_products_in_every_layout(built, dtype, lhs_transposed, rhs_transposed):
    rng = np.random.default_rng(0)
    lhs = jnp.asarray(rng.standard_normal((3, 5, 7)), dtype)  # [G, M, K]
    rhs = jnp.asarray(rng.standard_normal((3, 7, 4)), dtype)  # [G, K, N]
    want = np.einsum("gmk,gkn->gmn", np.asarray(lhs, np.float32), np.asarray(rhs, np.float32))
    a = jnp.swapaxes(lhs, 1, 2) if lhs_transposed else lhs
    b = jnp.swapaxes(rhs, 1, 2) if rhs_transposed else rhs
    call = jax.jit(
        lambda a, b: onednn_matmul.batched_matmul(
            a, b, lhs_transposed=lhs_transposed, rhs_transposed=rhs_transposed
        )
    )
    got = call(a, b)
    assert got.dtype == jnp.float32 and got.shape == (3, 5, 4)
    # Products of bfloat16 values are exact in float32: only the summation order differs.
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)


def test_concurrent_calls_keep_their_own_scratch(built):
    # Independent calls in one program may run on several XLA threads at once, and oneDNN
    # shares one scratchpad between primitives unless built for concurrent execution: each
    # call brings its own. (A training step once gave a NaN loss with the shared scratchpad;
    # this test did not catch that build, so it only checks that concurrent calls are right.)
    rng = np.random.default_rng(1)
    pairs = [
        (
            jnp.asarray(rng.standard_normal((48, 197, 64)), jnp.bfloat16),
            jnp.asarray(rng.standard_normal((48, 197, 64)), jnp.bfloat16),
        )
        for _ in range(6)
    ]
    call = jax.jit(
        lambda pairs: [onednn_matmul.batched_matmul(a, b, rhs_transposed=True) for a, b in pairs]
    )
    wants = [
        np.einsum("gmk,gnk->gmn", np.asarray(a, np.float32), np.asarray(b, np.float32))
        for a, b in pairs
    ]
    for _ in range(3):
        for got, want in zip(call(pairs), wants):
            np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-4)


def test_bad_operands_get_a_clear_error(built):
    with pytest.raises(ValueError, match="one dtype"):
        onednn_matmul.batched_matmul(jnp.zeros((1, 2, 3), jnp.bfloat16), jnp.zeros((1, 3, 2)))
