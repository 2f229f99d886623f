"""models.onednn_matmul: oneDNN's batched matmul as an XLA custom call gives NumPy's products
in every operand layout, with any number of batch axes and under `jax.vmap`, also with several
calls in one program, and refuses bad operands with a clear error."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.models import onednn
from vit_jax.models import onednn_matmul


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float32])
@pytest.mark.parametrize("lhs_transposed", [False, True])
@pytest.mark.parametrize("rhs_transposed", [False, True])
@pytest.mark.parametrize("shape", [(3, 5, 7, 4), (8, 197, 64, 197)], ids=["tiny", "vit"])
def test_products_in_every_layout(dtype, lhs_transposed, rhs_transposed, shape):
    onednn.require(dtype)
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


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float32])
def test_batch_axes_and_vmap(dtype):
    # [B, H, ., .] as the attention core passes them, and a vmapped axis on top.
    onednn.require(dtype)
    rng = np.random.default_rng(2)
    lhs = jnp.asarray(rng.standard_normal((3, 2, 4, 5, 6)), dtype)  # [V, B, H, M, K]
    rhs = jnp.asarray(rng.standard_normal((3, 2, 4, 7, 6)), dtype)  # [V, B, H, N, K]
    want = np.einsum("vbhmk,vbhnk->vbhmn", np.asarray(lhs, np.float32), np.asarray(rhs, np.float32))
    product = lambda a, b: onednn_matmul.batched_matmul(a, b, rhs_transposed=True)
    np.testing.assert_allclose(np.asarray(jax.jit(product)(lhs, rhs)), want, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(np.asarray(jax.vmap(product)(lhs, rhs)), want, rtol=1e-5, atol=1e-4)
    # One operand mapped, the other shared: the shared one is broadcast to the mapped size.
    shared = jax.vmap(product, in_axes=(0, None))(lhs, rhs[0])
    want = np.einsum(
        "vbhmk,bhnk->vbhmn", np.asarray(lhs, np.float32), np.asarray(rhs[0], np.float32)
    )
    np.testing.assert_allclose(np.asarray(shared), want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("lhs, rhs", [((2, 3, 0), (2, 0, 4)), ((0, 3, 5), (0, 5, 4))])
def test_empty_operands(lhs, rhs):
    # An empty contraction is zeros; an empty batch is an empty result.
    onednn.require(jnp.float32)
    got = onednn_matmul.batched_matmul(jnp.ones(lhs, jnp.float32), jnp.ones(rhs, jnp.float32))
    np.testing.assert_array_equal(np.asarray(got), np.zeros((*lhs[:2], rhs[2]), np.float32))


def test_concurrent_calls_are_right():
    # Independent calls in one program may run on several XLA threads at once, and oneDNN
    # shares one scratchpad between primitives unless built for concurrent execution, so each
    # call brings its own. This checks the results of such a program, all three layouts of
    # the attention core mixed; it did not fail with a shared scratchpad either.
    onednn.require(jnp.bfloat16)
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
        ((2, 2, 3), (1, 3, 2), {}, "disagree on the batch axes"),
        ((1, 1, 2, 3), (1, 2, 3, 2), {}, "disagree on the batch axes"),
        ((1, 2, 3), (1, 1, 3, 2), {}, "one rank >= 3"),
        ((1, 2, 3), (1, 4, 2), {}, "contracted size"),
        ((1, 2, 3), (1, 2, 3), {"rhs_transposed": False}, "contracted size"),
        ((1, 2, 3), (1, 3, 2), {"lhs_transposed": True}, "contracted size"),
        ((2, 3), (1, 3, 2), {}, "one rank >= 3"),
    ],
)
def test_bad_operands_get_a_clear_error(lhs, rhs, flags, message):
    onednn.require(jnp.float32)
    a, b = jnp.ones(lhs, jnp.float32), jnp.ones(rhs, jnp.float32)
    if message is None:
        assert onednn_matmul.batched_matmul(a, b, **flags).shape == (1, 2, 2)
        return
    with pytest.raises(ValueError, match=message):
        onednn_matmul.batched_matmul(a, b, **flags)


def test_dtypes_are_checked_before_running():
    onednn.require(jnp.float32)
    with pytest.raises(ValueError, match="one dtype"):
        onednn_matmul.batched_matmul(jnp.zeros((1, 2, 3), jnp.bfloat16), jnp.zeros((1, 3, 2)))
    half = jnp.zeros((1, 2, 2), jnp.float16)
    with pytest.raises(RuntimeError, match="only bfloat16 and float32"):
        onednn_matmul.batched_matmul(half, half)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float32])
def test_dense_and_its_gradient_are_numpys(dtype):
    """`dense`: `x @ kernel` in float32, and a backward pass that multiplies the cotangent,
    cast to the operands' dtype, with each operand (float32 sums of exact products)."""
    onednn.require(dtype)
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.standard_normal((37, 24)), dtype)  # [T, I]
    kernel = jnp.asarray(rng.standard_normal((24, 40)), dtype)  # [I, O]
    d_out = jnp.asarray(rng.standard_normal((37, 40)), jnp.float32)  # [T, O]
    out, vjp = jax.vjp(onednn_matmul.dense, x, kernel)
    d_x, d_kernel = jax.jit(vjp)(d_out)
    as32 = lambda a: np.asarray(a, np.float32)
    d_low = as32(d_out.astype(dtype))
    assert out.dtype == jnp.float32 and (d_x.dtype, d_kernel.dtype) == (dtype, dtype)
    np.testing.assert_allclose(np.asarray(out), as32(x) @ as32(kernel), rtol=1e-5, atol=1e-4)
    # The gradients are returned in the operands' dtype: compare after the same rounding.
    rtol = 1e-5 if dtype == jnp.float32 else 1e-2
    np.testing.assert_allclose(as32(d_x), d_low @ as32(kernel).T, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(as32(d_kernel), as32(x).T @ d_low, rtol=rtol, atol=rtol)
