"""The optimizer and learning-rate schedule, built from the config.

The update is `clip_by_global_norm(grad_norm_clip)`, then the optimizer's direction
(`config.optimizer`: SGD with momentum, Adam, AdamW) with its weight decay, then the scheduled
learning rate: linear warmup from 0 over `warmup_steps`, then `decay_type` down to `final_lr`
at `total_steps`. Moments are kept in `optim_dtype`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from vit_jax.errors import ConfigError

DECAYED_PARAMS = (
    "kernel",
)  # Weight decay applies to these leaves (not biases, norms, embeddings).


def _cosine(progress: jax.Array) -> jax.Array:
    return 0.5 * (1.0 + jnp.cos(jnp.pi * progress))


def _linear(progress: jax.Array) -> jax.Array:
    return 1.0 - progress


def _constant(progress: jax.Array) -> jax.Array:
    return jnp.ones_like(progress)


# Decay factor (1 at the end of warmup, 0 at total_steps) by `config.decay_type`.
DECAYS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "cosine": _cosine,
    "linear": _linear,
    "constant": _constant,
}


def learning_rate_schedule(config: Any) -> optax.Schedule:
    """`step -> lr`: `base_lr * min(1, step / warmup_steps)`, then decay to `final_lr`."""
    if config.decay_type not in DECAYS:
        raise ConfigError(f"Unknown decay_type {config.decay_type!r}; use one of {sorted(DECAYS)}.")
    decay = DECAYS[config.decay_type]
    base, final = float(config.base_lr), float(config.final_lr)
    total, warmup = int(config.total_steps), int(config.warmup_steps)

    def schedule(step: jax.Array) -> jax.Array:
        step = jnp.asarray(step, jnp.float32)
        progress = jnp.clip((step - warmup) / max(total - warmup, 1), 0.0, 1.0)
        lr = final + (base - final) * decay(progress)
        if warmup:
            lr = lr * jnp.minimum(1.0, step / warmup)
        return lr

    return schedule


def _decay_mask(params: Any) -> Any:
    return jax.tree_util.tree_map_with_path(
        lambda path, _: getattr(path[-1], "key", None) in DECAYED_PARAMS, params
    )


def _weight_decay(config: Any) -> optax.GradientTransformation:
    if not config.weight_decay:
        return optax.identity()
    return optax.add_decayed_weights(config.weight_decay, mask=_decay_mask)


def _sgd(config: Any) -> list[optax.GradientTransformation]:
    """SGD with (heavy-ball) momentum; weight decay added to the gradient (L2)."""
    momentum = optax.trace(decay=config.momentum, accumulator_dtype=jnp.dtype(config.optim_dtype))
    return [_weight_decay(config), momentum]


def _adam_moments(config: Any) -> optax.GradientTransformation:
    return optax.scale_by_adam(
        b1=config.adam_b1, b2=config.adam_b2, mu_dtype=jnp.dtype(config.optim_dtype)
    )


def _adam(config: Any) -> list[optax.GradientTransformation]:
    """Adam; weight decay added to the gradient (L2), as in the original Adam."""
    return [_weight_decay(config), _adam_moments(config)]


def _adamw(config: Any) -> list[optax.GradientTransformation]:
    """Adam with decoupled weight decay, scaled by the learning rate (optax.adamw)."""
    return [_adam_moments(config), _weight_decay(config)]


# The direction of each optimizer, by `config.optimizer`.
OPTIMIZERS: dict[str, Callable[[Any], list[optax.GradientTransformation]]] = {
    "sgd": _sgd,
    "adam": _adam,
    "adamw": _adamw,
}


def make_optimizer(config: Any) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """The full update rule and its learning-rate schedule (for logging)."""
    if config.optimizer not in OPTIMIZERS:
        raise ConfigError(
            f"Unknown optimizer {config.optimizer!r}; use one of {sorted(OPTIMIZERS)}."
        )
    schedule = learning_rate_schedule(config)
    clip = (
        optax.clip_by_global_norm(config.grad_norm_clip)
        if config.grad_norm_clip
        else optax.identity()
    )
    tx = optax.chain(
        clip, *OPTIMIZERS[config.optimizer](config), optax.scale_by_learning_rate(schedule)
    )
    return tx, schedule
