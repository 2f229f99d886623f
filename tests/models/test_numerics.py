"""Forward numerics against the independent float64 NumPy implementation in numpy_vit.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.models import numpy_vit, tiny
from vit_jax import models


@pytest.mark.parametrize("name", sorted(tiny.TINY_CONFIGS))
def test_logits_match_numpy(name):
    model, size = tiny.build(name)
    params = tiny.random_params(model, size)
    images = tiny.random_images(size)
    logits = model.apply({"params": params}, images)
    expected, *_ = numpy_vit.vit_forward(
        params,
        images,
        num_heads=model.transformer["num_heads"],
        classifier=model.classifier,
        hybrid=model.resnet is not None,
    )
    assert logits.shape == expected.shape
    np.testing.assert_allclose(np.asarray(logits), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["token", "hybrid"])
def test_intermediates_match_numpy(name):
    """Pre-logits, encoder output and every layer's attention weights, from one apply."""
    model, size = tiny.build(name)
    params = tiny.random_params(model, size)
    images = tiny.random_images(size)
    logits, state = model.apply({"params": params}, images, mutable=["intermediates"])
    inter = state["intermediates"]
    exp_logits, exp_pre, exp_encoded, exp_weights = numpy_vit.vit_forward(
        params, images, num_heads=2, classifier="token", hybrid=model.resnet is not None
    )
    np.testing.assert_allclose(np.asarray(logits), exp_logits, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(inter["pre_logits"][0]), exp_pre, atol=1e-5)
    np.testing.assert_allclose(np.asarray(inter["encoded"][0]), exp_encoded, atol=1e-5)
    weights = models.attention_weights(inter)
    assert len(weights) == len(exp_weights) == 2
    for got, want in zip(weights, exp_weights):
        assert got.shape == want.shape  # [B, H, N, N]
        np.testing.assert_allclose(np.asarray(got), want, atol=1e-5)


def test_fused_and_explicit_attention_agree():
    """The fused path (no intermediates) and the explicit path give the same logits."""
    model, size = tiny.build("token")
    params = tiny.random_params(model, size)
    images = tiny.random_images(size)
    fused = model.apply({"params": params}, images)
    explicit, _ = model.apply({"params": params}, images, mutable=["intermediates"])
    np.testing.assert_allclose(np.asarray(fused), np.asarray(explicit), atol=1e-6)


@pytest.mark.parametrize("remat", [False, True])
def test_class_token_classifier_skips_the_last_blocks_other_tokens(remat):
    """The 'token' classifier runs the last block for the class token alone: the logits and
    gradients of the full computation (taken when intermediates are requested) for less work."""
    model, size = tiny.build("token", remat=remat)
    params = tiny.random_params(model, size)
    images = tiny.random_images(size)
    full_apply = lambda p: model.apply({"params": p}, images, mutable=["intermediates"])[0]
    short_apply = lambda p: model.apply({"params": p}, images)
    np.testing.assert_allclose(short_apply(params), full_apply(params), atol=1e-5)
    loss = lambda apply: lambda p: jnp.sum(jnp.sin(apply(p)))
    for a, b in zip(
        jax.tree.leaves(jax.grad(loss(short_apply))(params)),
        jax.tree.leaves(jax.grad(loss(full_apply))(params)),
    ):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6, rtol=1e-5)
    flops = lambda apply: jax.jit(apply).lower(params).compile().cost_analysis()["flops"]
    # Two layers, 17 tokens: the last block's attention and MLP shrink to one token.
    assert flops(short_apply) < 0.75 * flops(full_apply)


def test_numpy_reference_uses_tf_same_padding():
    """Sanity of the reference itself: SAME puts the odd padding at the end, as TF does."""
    assert numpy_vit.tf_same_pads(32, 7, 2) == (2, 3)
    assert numpy_vit.tf_same_pads(16, 3, 2) == (0, 1)
    assert numpy_vit.tf_same_pads(15, 3, 2) == (1, 1)


def test_bfloat16_compute_keeps_float32_params_and_agrees():
    model, size = tiny.build("token")
    params = tiny.random_params(model, size)
    images = tiny.random_images(size, batch=4)
    model_bf16, _ = tiny.build("token", dtype=jnp.bfloat16)
    init_bf16 = model_bf16.init(jax.random.key(0), jnp.zeros((1, size, size, 3)))["params"]
    assert {leaf.dtype for leaf in jax.tree.leaves(init_bf16)} == {jnp.dtype(jnp.float32)}
    logits32 = model.apply({"params": params}, images)
    logits16 = model_bf16.apply({"params": params}, images)
    assert logits16.dtype == jnp.bfloat16
    np.testing.assert_allclose(
        np.asarray(logits16, np.float32), np.asarray(logits32), atol=0.1, rtol=0.05
    )


def test_remat_gives_same_outputs_and_gradients():
    model, size = tiny.build("token")
    model_remat, _ = tiny.build("token", remat=True)
    params = tiny.random_params(model, size)
    images = tiny.random_images(size)

    def loss(p, m):
        return jnp.sum(m.apply({"params": p}, images, train=True) ** 2)

    grads = jax.grad(loss)(params, model)
    grads_remat = jax.grad(loss)(params, model_remat)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_remat)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5, rtol=1e-5)


def test_stochastic_depth_and_dropout_only_in_training():
    model, size = tiny.build(
        "token",
        stoch_depth=0.5,
        transformer={**tiny.TRANSFORMER, "dropout_rate": 0.1, "attention_dropout_rate": 0.1},
    )
    params = tiny.random_params(model, size)
    images = tiny.random_images(size, batch=8)
    eval_a = model.apply({"params": params}, images)
    eval_b = model.apply({"params": params}, images)
    np.testing.assert_array_equal(np.asarray(eval_a), np.asarray(eval_b))
    train_a = model.apply(
        {"params": params}, images, train=True, rngs={"dropout": jax.random.key(1)}
    )
    train_b = model.apply(
        {"params": params}, images, train=True, rngs={"dropout": jax.random.key(2)}
    )
    assert not np.allclose(np.asarray(train_a), np.asarray(train_b))
    assert not np.allclose(np.asarray(train_a), np.asarray(eval_a))


def test_unpooled_classifiers_return_per_token_outputs():
    model, size = tiny.build("token", classifier="token_unpooled")
    params = model.init(jax.random.key(0), jnp.zeros((1, size, size, 3)))["params"]
    assert model.apply({"params": params}, tiny.random_images(size)).shape == (2, 17, 5)
    model, _ = tiny.build("token", classifier="unpooled")
    params = model.init(jax.random.key(0), jnp.zeros((1, size, size, 3)))["params"]
    assert "cls" not in params
    assert model.apply({"params": params}, tiny.random_images(size)).shape == (2, 16, 5)


def test_bad_inputs_give_clear_errors():
    model, size = tiny.build("token")
    params = model.init(jax.random.key(0), jnp.zeros((1, size, size, 3)))["params"]
    with pytest.raises(ValueError, match="NHWC"):
        model.apply({"params": params}, jnp.zeros((1, size, size)))
    bad, _ = tiny.build("token", classifier="cls")
    with pytest.raises(ValueError, match="Unknown classifier"):
        bad.init(jax.random.key(0), jnp.zeros((1, size, size, 3)))
    heads, _ = tiny.build("token", transformer={**tiny.TRANSFORMER, "num_heads": 3})
    with pytest.raises(ValueError, match="divisible by num_heads"):
        heads.init(jax.random.key(0), jnp.zeros((1, size, size, 3)))


@pytest.mark.parametrize("remat", [False, True])
def test_scan_layers_equals_per_layer_model(remat):
    """Same logits, gradients and attention maps; parameters convert both ways exactly."""
    model, size = tiny.build("token")
    scanned, _ = tiny.build("token", scan_layers=True, remat=remat)
    params = tiny.random_params(model, size)
    stacked = models.stack_encoder_blocks(params)
    init_shapes = jax.eval_shape(scanned.init, jax.random.key(0), jnp.zeros((1, size, size, 3)))
    assert jax.tree.map(jnp.shape, init_shapes["params"]) == jax.tree.map(jnp.shape, stacked)
    images = tiny.random_images(size)
    np.testing.assert_allclose(
        np.asarray(scanned.apply({"params": stacked}, images)),
        np.asarray(model.apply({"params": params}, images)),
        atol=1e-5,
    )
    _, state = scanned.apply({"params": stacked}, images, mutable=["intermediates"])
    _, state_ref = model.apply({"params": params}, images, mutable=["intermediates"])
    for got, want in zip(
        models.attention_weights(state["intermediates"]),
        models.attention_weights(state_ref["intermediates"]),
    ):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-6)

    grad_fn = lambda m, p: jax.grad(lambda q: jnp.sum(m.apply({"params": q}, images) ** 2))(p)
    grads = models.stack_encoder_blocks(grad_fn(model, params))
    grads_scan = grad_fn(scanned, stacked)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_scan)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5, rtol=1e-5)
    restored = models.unstack_encoder_blocks(stacked)
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_scan_layers_stochastic_depth_trains():
    model, size = tiny.build("token", scan_layers=True, stoch_depth=0.5)
    per_layer, _ = tiny.build("token")
    params = models.stack_encoder_blocks(tiny.random_params(per_layer, size))
    images = tiny.random_images(size, batch=8)
    a = model.apply({"params": params}, images, train=True, rngs={"dropout": jax.random.key(1)})
    b = model.apply({"params": params}, images, train=True, rngs={"dropout": jax.random.key(2)})
    assert not np.allclose(np.asarray(a), np.asarray(b))
    eval_logits = model.apply({"params": params}, images)
    np.testing.assert_allclose(
        np.asarray(eval_logits),
        np.asarray(per_layer.apply({"params": models.unstack_encoder_blocks(params)}, images)),
        atol=1e-5,
    )
