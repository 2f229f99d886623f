"""Float32-accumulating matmuls: JAX's own gradient for float32, and a backward pass whose
matmuls all take bfloat16 operands for bfloat16 compute; "compute" outputs (the GPU's choice)
return bfloat16 with JAX's own gradient."""

import re

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

from tests.models import tiny
from vit_jax.models import backend_tuning, matmul
from vit_jax.models.matmul import _einsum_f32_low_precision_backward, einsum_f32, matmul_f32


def _random(shape, seed):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


@pytest.mark.parametrize(
    ("spec", "lhs_shape", "rhs_shape"),
    [
        ("ti,io->to", (6, 4), (4, 5)),
        ("ti,io->to", (6, 5), (5, 4)),  # A narrowing kernel: its gradient is computed transposed.
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
    # XLA's matmuls, which the HLO shows ("auto" may take oneDNN's custom call on this host).
    model16, _ = tiny.build("token", dtype=jnp.bfloat16, matmul_library="xla")
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


def _dot_converts(spec: str, a: jax.Array, b: jax.Array) -> list[str]:
    """The float32 conversions in the compiled program of one float32-accumulating einsum."""
    dot = jax.jit(lambda a, b: jnp.einsum(spec, a, b, preferred_element_type=jnp.float32))
    return _float32_converts(dot.lower(a, b).compile().as_text())


def _skip_without_bfloat16_dots(x: jax.Array, kernel: jax.Array) -> None:
    if _dot_converts("ti,io->to", x, kernel):
        pytest.skip("this CPU has no bfloat16 matmul path in XLA: every bfloat16 dot converts")


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

    flat_x, flat_g = x.reshape(-1, 32), weights.reshape(-1, 48).astype(jnp.bfloat16)
    _skip_without_bfloat16_dots(flat_x, kernel)
    if not _dot_converts("ti,to->io", flat_x, flat_g):
        pytest.skip(
            "XLA:CPU no longer converts a plain weight-gradient dot: the unit axis of "
            "_backward_einsum can go"
        )
    compiled = jax.jit(jax.grad(loss, (0, 1))).lower(x, kernel).compile().as_text()
    assert compiled.count(" dot(") == 2
    assert _float32_converts(compiled) == []


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="checks XLA:CPU's compiled program")
def test_narrowing_kernel_gradient_is_computed_transposed_and_runs_in_bfloat16():
    """A kernel [I, O] with I > O (the MLP's second layer) gets its gradient as an [O, I]
    product transposed back (`_narrowing_kernel_gradient`), in bfloat16 on CPU, and the
    compiled program runs (XLA:CPU's own dot cannot run a bfloat16 dot with float32 output)
    with the float32 gradient's values."""
    x = _random((2, 40, 48), 0)  # [B, N, I]
    kernel = _random((48, 32), 1)  # [I, O], I > O
    weights = _random((2, 40, 32), 2)

    def loss(x, kernel):
        return jnp.sum(matmul_f32(x, kernel) * weights)

    x16, kernel16 = x.astype(jnp.bfloat16), kernel.astype(jnp.bfloat16)
    _skip_without_bfloat16_dots(x16.reshape(-1, 48), kernel16)
    grad = jax.jit(jax.grad(loss, (0, 1)))
    compiled = grad.lower(x16, kernel16).compile().as_text()
    dots = re.findall(r"= (\w+\[[\d,]*\])\S* dot\(", compiled)
    assert sorted(dots) == ["f32[32,48]", "f32[80,48]"], dots  # d_kernel^T, d_x
    assert _float32_converts(compiled) == []
    got = grad(x16, kernel16)
    want = jax.grad(loss, (0, 1))(x16.astype(jnp.float32), kernel16.astype(jnp.float32))
    for g, w in zip(got, want):
        assert g.dtype == jnp.bfloat16
        np.testing.assert_allclose(g.astype(jnp.float32), w, rtol=0.02, atol=0.05)


SPECS = [("ti,io->to", (6, 4), (4, 5)), ("bhqs,bshk->bqhk", (2, 3, 5, 7), (2, 7, 3, 4))]


@pytest.mark.parametrize(("spec", "lhs_shape", "rhs_shape"), SPECS)
def test_compute_outputs_are_jaxs_own_low_precision_einsum(spec, lhs_shape, rhs_shape):
    """ "compute": bfloat16 operands give JAX's bfloat16 einsum and its gradient; "float32" the
    float32-accumulated output and custom gradient; float32 operands the same either way."""
    lhs, rhs = _random(lhs_shape, 0), _random(rhs_shape, 1)
    weights = _random(jnp.einsum(spec, lhs, rhs).shape, 2)
    low = (lhs.astype(jnp.bfloat16), rhs.astype(jnp.bfloat16))

    def grads(fn, a, b):
        return jax.grad(lambda a, b: jnp.sum(fn(a, b).astype(jnp.float32) * weights), (0, 1))(a, b)

    compute = lambda a, b: matmul.einsum(spec, a, b, "compute")
    plain = lambda a, b: jnp.einsum(spec, a, b)
    assert compute(*low).dtype == jnp.bfloat16
    np.testing.assert_array_equal(compute(*low), plain(*low))
    for got, want in zip(grads(compute, *low), grads(plain, *low)):
        assert got.dtype == jnp.bfloat16
        np.testing.assert_array_equal(got, want)

    as_float32 = lambda a, b: matmul.einsum(spec, a, b, "float32")
    assert as_float32(*low).dtype == jnp.float32
    np.testing.assert_array_equal(as_float32(*low), einsum_f32(spec, *low))
    # Float32 operands: one computation whatever the setting.
    np.testing.assert_array_equal(compute(lhs, rhs), einsum_f32(spec, lhs, rhs))


def test_auto_outputs_are_the_default_backends_choice(monkeypatch):
    monkeypatch.setattr(backend_tuning, "for_default_backend", lambda: backend_tuning.CPU)
    assert matmul.resolve_outputs("auto") == "float32"
    for name, choices in (("gpu", backend_tuning.GPU), ("tpu", backend_tuning.ACCELERATOR)):
        monkeypatch.setattr(backend_tuning, "for_default_backend", lambda c=choices: c)
        assert matmul.resolve_outputs("auto") == choices.matmul_outputs
        x, kernel = _random((3, 4), 0).astype(jnp.bfloat16), _random((4, 2), 1)
        want = jnp.bfloat16 if name == "gpu" else jnp.float32
        assert matmul.matmul(x, kernel.astype(jnp.bfloat16), "auto").dtype == want
    assert matmul.resolve_outputs("float32") == "float32"  # Explicit settings are kept.


def test_unknown_outputs_are_refused_with_the_choices():
    from vit_jax.errors import ConfigError
    from vit_jax.models import get_model

    with pytest.raises(ConfigError, match=r"model\.matmul_outputs.*'float32', 'compute'"):
        get_model("ViT-Ti_16", matmul_outputs="bfloat16")  # Refused before anything traces.
    with pytest.raises(ValueError, match=r"Unknown matmul_outputs 'bf16'.*'compute'"):
        matmul.resolve_outputs("bf16")
    with pytest.raises(ValueError, match="Unknown matmul_outputs"):
        matmul.dense_dot_general("bf16")


@pytest.mark.parametrize(("outputs", "want"), [("float32", jnp.float32), ("compute", jnp.bfloat16)])
def test_dense_dot_general_returns_the_chosen_dtype(outputs, want):
    x = _random((2, 3, 4), 0).astype(jnp.bfloat16)
    kernel = _random((4, 5), 1).astype(jnp.bfloat16)
    dot_general = matmul.dense_dot_general(outputs)
    got = dot_general(x, kernel, (((2,), (0,)), ((), ())))
    assert got.dtype == want
    np.testing.assert_allclose(
        got.astype(jnp.float32), x.astype(jnp.float32) @ kernel.astype(jnp.float32), rtol=1e-2
    )


def _dot_output_dtypes(jaxpr) -> list[str]:
    """The output dtype of every dot_general in a jaxpr, sub-jaxprs included."""
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            found.append(str(eqn.outvars[0].aval.dtype))
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            found += _dot_output_dtypes(sub)
    return found


@pytest.mark.parametrize("classifier", ["token", "pre_logits"])
def test_model_matmul_outputs_reach_every_matmul(classifier, monkeypatch):
    """`VisionTransformer.matmul_outputs` (config key `model.matmul_outputs`): "compute" makes
    every weight matmul of a bfloat16 model return bfloat16 (patch embedding, projections, MLP,
    pre-logits, head), "float32" every one float32, "auto" is the CPU's "float32" here; no
    parameter changes, and the gradients stay as close to float32 ones as before."""
    # The CPU's choices ("auto": float32 outputs, the explicit attention core) on any host.
    monkeypatch.setattr(backend_tuning, "for_default_backend", lambda: backend_tuning.CPU)
    model32, image_size = tiny.build(classifier)
    model16, _ = tiny.build(classifier, dtype=jnp.bfloat16, matmul_library="xla")  # In the HLO.
    params = tiny.random_params(model32, image_size)
    images = tiny.random_images(image_size)

    def loss(model):
        return lambda p: jnp.mean(model.apply({"params": p}, images).astype(jnp.float32) ** 2)

    flat = lambda tree: jnp.concatenate(
        [g.astype(jnp.float32).ravel() for g in jax.tree.leaves(tree)]
    )
    grads32 = flat(jax.grad(loss(model32))(params))
    outputs = {}
    for setting, want in (("compute", "bfloat16"), ("float32", "float32"), ("auto", "float32")):
        model = model16.clone(matmul_outputs=setting)
        forward = jax.make_jaxpr(lambda p, m=model: m.apply({"params": p}, images))(params).jaxpr
        dtypes = _dot_output_dtypes(forward)
        # The attention core's two matmuls per layer (logits, weighted values) are not the
        # model's projections: the CPU's explicit core keeps them in float32 either way.
        core = 2 * tiny.TRANSFORMER["num_layers"]
        assert dtypes.count("float32") == (core if want == "bfloat16" else len(dtypes)), dtypes
        assert dtypes.count(want) == len(dtypes) - (core if want == "bfloat16" else 0) >= 9
        grads = flat(jax.grad(loss(model))(params))
        assert float(jnp.linalg.norm(grads - grads32) / jnp.linalg.norm(grads32)) < 0.03
        outputs[setting] = (model.apply({"params": params}, images), grads)
        assert jax.tree.structure(model.init(jax.random.key(0), images)) == jax.tree.structure(
            model32.init(jax.random.key(0), images)
        )
    for got, want in zip(outputs["auto"], outputs["float32"]):  # "auto" here is "float32".
        np.testing.assert_array_equal(got, want)
    # A float32 model is one computation whatever the setting.
    want = model32.apply({"params": params}, images)
    got = model32.clone(matmul_outputs="compute").apply({"params": params}, images)
    np.testing.assert_array_equal(got, want)
