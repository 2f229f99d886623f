"""Learning-rate schedules and the optimizer registry."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from configs import base
from vit_jax.errors import ConfigError
from vit_jax.training import optim


def config(**overrides) -> ml_collections.ConfigDict:
    config = base.get_config()
    config.update(dict(total_steps=100, warmup_steps=10, base_lr=1.0, final_lr=0.0))
    config.update(overrides)
    return config


@pytest.mark.parametrize("decay_type", sorted(optim.DECAYS))
def test_warmup_then_decay(decay_type):
    schedule = optim.learning_rate_schedule(config(decay_type=decay_type, final_lr=0.1))
    lr = np.array([schedule(step) for step in range(101)])
    np.testing.assert_allclose(lr[:11], np.linspace(0, 1, 11), rtol=1e-6)
    assert np.all(np.diff(lr[10:]) <= 1e-7)
    expected_end = {"cosine": 0.1, "linear": 0.1, "constant": 1.0}[decay_type]
    assert lr[100] == pytest.approx(expected_end)


def test_cosine_midpoint_and_linear_shape():
    cosine = optim.learning_rate_schedule(config())
    assert cosine(55) == pytest.approx(0.5)  # Halfway through the decay.
    linear = optim.learning_rate_schedule(config(decay_type="linear", warmup_steps=0))
    np.testing.assert_allclose([linear(s) for s in (0, 25, 50, 100)], [1, 0.75, 0.5, 0], atol=1e-6)


def _updates(name, steps=3, **overrides):
    tx, _ = optim.make_optimizer(
        config(optimizer=name, warmup_steps=0, decay_type="constant", base_lr=0.1, **overrides)
    )
    params = {"dense": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones((2,))}}
    grads = jax.tree.map(lambda p: 0.5 * jnp.ones_like(p), params)
    state = tx.init(params)
    for _ in range(steps):
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
    return params, state


def test_sgd_momentum_and_optim_dtype():
    params, state = _updates("sgd", momentum=0.9, grad_norm_clip=0.0, optim_dtype="float32")
    # Momentum accumulates 0.5, 0.95, 1.355: 1 - 0.1 * (0.5 + 0.95 + 1.355) = 0.7195.
    np.testing.assert_allclose(params["dense"]["bias"], 0.7195, rtol=1e-6)
    trace = optax.tree_utils.tree_get(state, "trace")
    assert trace["dense"]["kernel"].dtype == jnp.float32
    _, state = _updates("sgd", optim_dtype="bfloat16")
    assert optax.tree_utils.tree_get(state, "trace")["dense"]["kernel"].dtype == jnp.bfloat16


def test_gradient_clipping():
    # Six gradients of 0.5 have global norm sqrt(1.5); clipped to norm 0.1.
    params, _ = _updates("sgd", steps=1, momentum=0.0, grad_norm_clip=0.1)
    np.testing.assert_allclose(params["dense"]["bias"], 1 - 0.1 * 0.05 / np.sqrt(1.5), rtol=1e-5)


def test_adam_weight_decay_is_added_to_kernel_gradients():
    kwargs = dict(steps=1, grad_norm_clip=0.0, optim_dtype="float32")
    _, decayed = _updates("adam", weight_decay=0.5, **kwargs)
    _, plain = _updates("adam", weight_decay=0.0, **kwargs)
    mu, plain_mu = (optax.tree_utils.tree_get(s, "mu")["dense"] for s in (decayed, plain))
    assert mu["kernel"].dtype == jnp.float32
    np.testing.assert_allclose(mu["kernel"], 0.1 * (0.5 + 0.5 * 1.0))  # (1 - b1) * (g + wd * p)
    np.testing.assert_allclose(mu["bias"], plain_mu["bias"])


def test_adamw_decays_kernels_only():
    decayed, _ = _updates("adamw", weight_decay=0.5)
    plain, _ = _updates("adamw", weight_decay=0.0)
    np.testing.assert_array_equal(decayed["dense"]["bias"], plain["dense"]["bias"])
    assert np.all(decayed["dense"]["kernel"] < plain["dense"]["kernel"])


def test_unknown_names_are_config_errors():
    with pytest.raises(ConfigError, match="Unknown optimizer 'lamb'"):
        optim.make_optimizer(config(optimizer="lamb"))
    with pytest.raises(ConfigError, match="Unknown decay_type 'step'"):
        optim.make_optimizer(config(decay_type="step"))
