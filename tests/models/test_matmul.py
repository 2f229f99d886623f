"""Float32-accumulating matmuls: JAX's own gradient for float32, and a backward pass whose
matmuls all take bfloat16 operands for bfloat16 compute."""

import re

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

from tests.models import tiny
from vit_jax.models.matmul import _einsum_f32_low_precision_backward, einsum_f32, matmul_f32


def _random(shape, seed):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


@pytest.mark.parametrize(
    ("spec", "lhs_shape", "rhs_shape"),
    [
        ("ti,io->to", (6, 4), (4, 5)),
        ("bhqk,bhsk->bhqs", (2, 3, 5, 4), (2, 3, 7, 4)),
        ("bhqs,bhsk->bhqk", (2, 3, 5, 7), (2, 3, 7, 4)),
        ("bhqs,bshk->bqhk", (2, 3, 5, 7), (2, 7, 3, 4)),
    ],
)
def test_custom_backward_in_float32_is_jaxs_own_gradient(spec, lhs_shape, rhs_shape):
    """The custom VJP's transposed einsums, checked where they must equal JAX's exactly."""
    lhs, rhs = _random(lhs_shape, 0), _random(rhs_shape, 1)
    weights = _random(jnp.einsum(spec, lhs, rhs).shape, 2)
    custom = _einsum_f32_low_precision_backward
    ours = jax.grad(lambda a, b: jnp.sum(custom(spec, a, b) * weights), (0, 1))(lhs, rhs)
    plain = jax.grad(lambda a, b: jnp.sum(jnp.einsum(spec, a, b) * weights), (0, 1))(lhs, rhs)
    for got, want in zip(ours, plain):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_matmul_keeps_leading_dimensions():
    x, kernel = _random((2, 3, 4), 0), _random((4, 5), 1)
    np.testing.assert_allclose(matmul_f32(x, kernel), x @ kernel, rtol=1e-6, atol=1e-6)
    assert matmul_f32(x.astype(jnp.bfloat16), kernel.astype(jnp.bfloat16)).dtype == jnp.float32


def _dot_operand_dtypes(jaxpr) -> list[tuple[str, str]]:
    """(lhs, rhs) dtypes of every dot_general in a jaxpr, sub-jaxprs included."""
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            found.append(tuple(str(v.aval.dtype) for v in eqn.invars))
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            found += _dot_operand_dtypes(sub)
    return found


def test_bfloat16_training_gradient_multiplies_in_bfloat16():
    """Every matmul of a bfloat16 model's forward and backward pass takes bfloat16 operands,
    and the gradients stay close to float32 ones."""
    model32, image_size = tiny.build("token")
    model16, _ = tiny.build("token", dtype=jnp.bfloat16)
    params = tiny.random_params(model32, image_size)
    images = tiny.random_images(image_size)

    def loss(model):
        return lambda p: jnp.mean(model.apply({"params": p}, images).astype(jnp.float32) ** 2)

    jaxpr = jax.make_jaxpr(jax.grad(loss(model16)))(params).jaxpr
    dtypes = _dot_operand_dtypes(jaxpr)
    # 2 layers x (qkv, out, 2 attention, 2 MLP) forward, each with 2 backward matmuls.
    assert len(dtypes) >= 36
    assert all(d == ("bfloat16", "bfloat16") for d in dtypes), dtypes

    grads16 = jax.grad(loss(model16))(params)
    grads32 = jax.grad(loss(model32))(params)
    flat16 = jnp.concatenate([g.astype(jnp.float32).ravel() for g in jax.tree.leaves(grads16)])
    flat32 = jnp.concatenate([g.ravel() for g in jax.tree.leaves(grads32)])
    # Relative to the whole gradient: some leaves (the key bias) have an exactly zero gradient
    # in exact arithmetic, which bfloat16 rounding turns into small noise.
    assert float(jnp.linalg.norm(flat16 - flat32) / jnp.linalg.norm(flat32)) < 0.03


def test_unsupported_einsum_is_refused():
    with pytest.raises(ValueError, match="two-operand einsums"):
        einsum_f32("ij,jk->i", _random((2, 3), 0), _random((3, 4), 1))


def test_float32_model_keeps_forward_mode_differentiation():
    """Float32 takes JAX's own einsum, so `jax.jvp` still works through the model."""
    model, image_size = tiny.build("token")
    params = tiny.random_params(model, image_size)
    images = tiny.random_images(image_size)
    apply = lambda x: model.apply({"params": params}, x)
    _, tangent = jax.jvp(apply, (images,), (jnp.ones_like(images),))
    step = 1e-3
    finite = (apply(images + step * jnp.ones_like(images)) - apply(images)) / step
    np.testing.assert_allclose(tangent, finite, atol=2e-2, rtol=2e-2)


def _float32_converts(compiled_hlo: str) -> list[str]:
    """Instructions of a compiled program that convert something to float32."""
    lines = compiled_hlo.splitlines()
    return [line.strip() for line in lines if re.search(r"= f32\[.*\bconvert\(", line)]


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="checks XLA:CPU's compiled program")
def test_bfloat16_weight_gradient_stays_bfloat16_on_cpu():
    """XLA:CPU runs a dot whose first operand is contracted on its leading axis (the weight
    gradient `ti,to->io`) with both operands converted to float32, at half the speed; the
    backward pass is written so that it does not (see `_backward_einsum`)."""
    x = _random((2, 40, 32), 0).astype(jnp.bfloat16)  # [B, N, I]
    kernel = _random((32, 48), 1).astype(jnp.bfloat16)  # [I, O]
    weights = _random((2, 40, 48), 2)

    def loss(x, kernel):
        return jnp.sum(matmul_f32(x, kernel) * weights)

    def converts(spec, a, b):
        dot = jax.jit(lambda a, b: jnp.einsum(spec, a, b, preferred_element_type=jnp.float32))
        return _float32_converts(dot.lower(a, b).compile().as_text())

    flat_x, flat_g = x.reshape(-1, 32), weights.reshape(-1, 48).astype(jnp.bfloat16)
    if converts("ti,io->to", flat_x, kernel):
        pytest.skip("this CPU has no bfloat16 matmul path in XLA: every bfloat16 dot converts")
    if not converts("ti,to->io", flat_x, flat_g):
        pytest.skip(
            "XLA:CPU no longer converts a plain weight-gradient dot: the unit axis of "
            "_backward_einsum can go"
        )
    compiled = jax.jit(jax.grad(loss, (0, 1))).lower(x, kernel).compile().as_text()
    assert compiled.count(" dot(") == 2
    assert _float32_converts(compiled) == []
