"""The packed attention core: the explicit attention's values, and for bfloat16 a hand-written
gradient that matches float32 as closely as JAX's does and keeps every XLA:CPU matmul in
bfloat16."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.models import custom_calls
from vit_jax.models.attention_core import explicit_attention, packed_attention

SHAPE = (2, 9, 3, 4, 8)  # [B, N, 3, H, K]


def _inputs(dtype=jnp.float32):
    rng = np.random.default_rng(0)
    qkv = jnp.asarray(rng.normal(size=SHAPE), jnp.float32).astype(dtype)
    cotangent = jnp.asarray(rng.normal(size=SHAPE[:2] + SHAPE[3:]), jnp.float32).astype(dtype)
    return qkv, cotangent


def _explicit(qkv):
    return explicit_attention(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], scale=1.0)[0]


def _gradient(core, qkv, cotangent):
    return jax.vjp(core, qkv)[1](cotangent)[0]


def test_float32_is_the_explicit_attention():
    qkv, cotangent = _inputs()
    np.testing.assert_array_equal(packed_attention(qkv), _explicit(qkv))
    np.testing.assert_array_equal(
        _gradient(packed_attention, qkv, cotangent), _gradient(_explicit, qkv, cotangent)
    )


def test_bfloat16_values_and_gradient_match_float32():
    qkv, cotangent = _inputs()
    qkv16, cotangent16 = qkv.astype(jnp.bfloat16), cotangent.astype(jnp.bfloat16)
    out = packed_attention(qkv16)
    assert out.dtype == jnp.bfloat16 and out.shape == SHAPE[:2] + SHAPE[3:]
    np.testing.assert_allclose(np.asarray(out, np.float32), _explicit(qkv), atol=0.03)

    grad16 = _gradient(packed_attention, qkv16, cotangent16)
    assert grad16.dtype == jnp.bfloat16 and grad16.shape == SHAPE
    want = _gradient(_explicit, qkv, cotangent)
    error = jnp.linalg.norm(grad16.astype(jnp.float32) - want) / jnp.linalg.norm(want)
    assert float(error) < 0.02
    # As close to float32 as JAX's own gradient of the bfloat16 explicit attention.
    jaxs = _gradient(_explicit, qkv16, cotangent16).astype(jnp.float32)
    assert float(error) < 1.5 * float(jnp.linalg.norm(jaxs - want) / jnp.linalg.norm(want))


def test_gradient_with_a_large_row_sum_term():
    """With the output itself as the cotangent, the softmax gradient's row-sum term
    `rowsum(dO * O)` is as large as it gets (a random cotangent keeps it small)."""
    qkv, _ = _inputs()
    qkv16 = qkv.astype(jnp.bfloat16)
    loss16 = lambda x: jnp.sum(packed_attention(x).astype(jnp.float32) ** 2)
    loss32 = lambda x: jnp.sum(_explicit(x) ** 2)
    got = jax.grad(loss16)(qkv16).astype(jnp.float32)
    want = jax.grad(loss32)(qkv)
    assert float(jnp.linalg.norm(got - want) / jnp.linalg.norm(want)) < 0.02


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_onednn_products_give_the_xla_products_values_and_gradient(dtype):
    """The same VJP with its six products by oneDNN: the values and gradient of XLA's products
    within one rounding of the compute dtype (float32: the explicit attention's, JAX's own
    gradient). Under `jax.jit`, as the custom call only lowers there."""
    custom_calls.require(dtype, "onednn")
    qkv, cotangent = (x.astype(dtype) for x in _inputs())
    xla = lambda x: packed_attention(x, products="xla")
    ours = lambda x: packed_attention(x, products="onednn")
    values_and_gradient = lambda core: jax.jit(lambda x, c: (core(x), _gradient(core, x, c)))
    want, want_grad = values_and_gradient(xla)(qkv, cotangent)
    got, got_grad = values_and_gradient(ours)(qkv, cotangent)
    assert got.dtype == dtype and got_grad.dtype == dtype and got_grad.shape == SHAPE
    tolerance = 1e-5 if dtype == jnp.float32 else 0.02
    for got_value, want_value in ((got, want), (got_grad, want_grad)):
        got_value, want_value = (np.asarray(v, np.float32) for v in (got_value, want_value))
        scale = np.abs(want_value).max()
        np.testing.assert_allclose(got_value, want_value, atol=tolerance * scale)


@pytest.mark.parametrize("vendor, want", [("AuthenticAMD", 6), ("GenuineIntel", 0)])
def test_auto_products_run_by_onednn_on_amd_cpus_with_avx512_bf16(monkeypatch, vendor, want):
    """`matmul_library="auto"` on an AMD CPU with AVX-512 bf16 and no AMX (Zen 4): the packed
    attention's six products, forward and backward, by oneDNN's custom call; on such an Intel
    CPU, XLA's (`backend_tuning.auto_attention_products`)."""
    from vit_jax.models import backend_tuning, onednn_matmul

    custom_calls.require(jnp.bfloat16, "onednn")
    monkeypatch.setattr(backend_tuning, "cpu_vendor", lambda: vendor)
    monkeypatch.setattr(backend_tuning, "cpu_has_avx512_bf16", lambda: True)
    monkeypatch.setattr(onednn_matmul, "uses_amx", lambda: False)
    monkeypatch.setattr(jax, "device_count", lambda: 1)  # The suite forces 8 host devices.
    qkv, cotangent = _inputs(jnp.bfloat16)
    core = lambda x: packed_attention(x, products="auto")
    gradient = jax.jit(lambda x, c: _gradient(core, x, c))  # Forward (2) and backward (4).
    lowered = gradient.lower(qkv, cotangent).as_text()
    assert lowered.count(onednn_matmul.TARGET) == want


def _dot_operand_types(compiled_hlo: str) -> list[tuple[str, str]]:
    """Element types of the two operands of every dot in a compiled program."""
    types = dict(re.findall(r"%(\S+) = (\w+)\[", compiled_hlo))
    dots = re.findall(r"\bdot\(%(\S+), %(\S+)\)", compiled_hlo)
    return [(types[lhs], types[rhs]) for lhs, rhs in dots]


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="checks XLA:CPU's compiled program")
def test_bfloat16_matmuls_stay_bfloat16_on_cpu():
    """XLA:CPU runs a bfloat16 dot whose operand is a transposed head layout in float32; the
    packed attention's six matmuls (forward and backward) all stay in bfloat16."""
    qkv, cotangent = _inputs(jnp.bfloat16)

    def compiled_dots(core):
        gradient = jax.jit(lambda x, c: _gradient(core, x, c))
        return _dot_operand_types(gradient.lower(qkv, cotangent).compile().as_text())

    plain = jax.jit(lambda a, b: jnp.einsum("ij,jk->ik", a, b, preferred_element_type=jnp.float32))
    matrix = qkv.reshape(-1, SHAPE[-1])
    if _dot_operand_types(plain.lower(matrix, matrix.T).compile().as_text()) != [("bf16", "bf16")]:
        pytest.skip("this CPU has no bfloat16 matmul path in XLA: every bfloat16 dot converts")
    explicit = compiled_dots(_explicit)
    assert explicit, "no dot found in the compiled program: update _dot_operand_types"
    if all(types == ("bf16", "bf16") for types in explicit):
        pytest.skip("XLA:CPU keeps the explicit attention in bfloat16 now: the unit axes can go")
    assert compiled_dots(packed_attention) == [("bf16", "bf16")] * 6
