"""Pure train and eval steps; `vit_jax.training.trainer.Trainer` jits them over a mesh.

One train step takes a global batch `{'image': [B, H, W, 3], 'label': [B, C]}`, splits it into
`accum_steps` micro-batches, averages their gradients (the same update as one step on the
whole batch, in a fraction of the memory) and applies one optimizer update.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from vit_jax import models
from vit_jax.models import backend_tuning
from vit_jax.models.micro_batch import MicroBatch
from vit_jax.training.losses import LossFn

Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]


@flax.struct.dataclass
class TrainState:
    """Everything a resumed run needs besides the data position."""

    step: jax.Array  # int32 [], number of updates applied.
    params: Any  # float32 parameter tree.
    opt_state: Any  # optax state, sharded like the parameters.
    rng: jax.Array  # uint32 [2], raw key data; step t uses fold_in(rng, t).


def split_microbatches(x: jax.Array, accum_steps: int) -> jax.Array:
    """`[B, ...] -> [accum_steps, B / accum_steps, ...]`, micro-batch j holding rows j::accum.

    Strided rows keep each micro-batch spread over all devices exactly as the batch is, so the
    split moves no data between devices.
    """
    batch = x.shape[0]
    x = x.reshape(batch // accum_steps, accum_steps, *x.shape[1:])  # [B/k, k, ...]
    return jnp.swapaxes(x, 0, 1)  # [k, B/k, ...]


def default_accum_steps(
    platform: str,
    images: int,
    params: Any,
    mlp_dim: int,
    dtype: Any,
    matmul_library: str = "auto",
) -> int:
    """`accum_steps` when the config leaves it unset: `platform`'s micro-batches
    (`models.backend_tuning`, item 3) for `images` per device of the model `params` (or their
    shapes) belong to, computing in `dtype` with `matmul_library`'s matmuls ("auto": the
    library this process picks, `models.matmul.resolve_library`)."""
    # The MLP's hidden activation is float32 also for bfloat16 compute: its matmul accumulates
    # and returns float32 (`models.matmul`, the matmul outputs of the CPU, the only backend
    # that splits batches). Sized by bfloat16's 2 bytes, a ViT-B/16 batch of 32
    # would split in 4 (8 images each): 3.00-3.09 img/s, against 3.15-3.18 in 8 (as float32).
    return backend_tuning.for_platform(platform).train_accum_steps(
        images=images,
        tokens_per_image=models.micro_batch.num_tokens(params),
        mlp_dim=mlp_dim,
        itemsize=max(jnp.dtype(dtype).itemsize, jnp.dtype(jnp.float32).itemsize),
        matmul_library=models.matmul.resolve_library(matmul_library, dtype),
    )


def make_train_step(
    model: nn.Module,
    tx: optax.GradientTransformation,
    loss_fn: LossFn,
    schedule: optax.Schedule,
    *,
    accum_steps: int,
    microbatch_sharding: Any = None,
    grad_shardings: Any = None,
) -> Callable[[TrainState, Batch], tuple[TrainState, Metrics]]:
    """`(state, batch) -> (state, metrics)`; metrics are scalars averaged over the batch.

    `microbatch_sharding` and `grad_shardings` (optional) pin the layout of the split batch and
    of the accumulated gradients inside the jitted step.
    """

    def constrain(x: Any, sharding: Any) -> Any:
        return x if sharding is None else jax.lax.with_sharding_constraint(x, sharding)

    def micro_loss(params: Any, images: jax.Array, labels: jax.Array, rng: jax.Array):
        logits = model.apply({"params": params}, images, train=True, rngs={"dropout": rng})
        return jnp.mean(loss_fn(logits, labels))

    grad_fn = jax.value_and_grad(micro_loss)

    def train_step(state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
        step_rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
        if accum_steps == 1:  # No loop: a one-step scan measured 1.43x slower on CPU.
            loss, grads = grad_fn(
                state.params, batch["image"], batch["label"], jax.random.fold_in(step_rng, 0)
            )
            return apply_update(state, loss, constrain(grads, grad_shardings))
        micro = {
            k: constrain(split_microbatches(batch[k], accum_steps), microbatch_sharding)
            for k in ("image", "label")
        }

        def accumulate(carry, inputs):
            loss_sum, grad_sum = carry
            index, images, labels = inputs
            loss, grads = grad_fn(state.params, images, labels, jax.random.fold_in(step_rng, index))
            grad_sum = jax.tree.map(jnp.add, grad_sum, grads)
            return (loss_sum + loss, constrain(grad_sum, grad_shardings)), None

        zeros = constrain(jax.tree.map(jnp.zeros_like, state.params), grad_shardings)
        (loss_sum, grad_sum), _ = jax.lax.scan(
            accumulate,
            (jnp.zeros((), jnp.float32), zeros),
            (jnp.arange(accum_steps), micro["image"], micro["label"]),
        )
        loss = loss_sum / accum_steps
        grads = jax.tree.map(lambda g: g / accum_steps, grad_sum)
        return apply_update(state, loss, grads)

    def apply_update(state: TrainState, loss: jax.Array, grads: Any):
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {
            "train_loss": loss,
            "grad_norm": optax.global_norm(grads),
            "learning_rate": schedule(state.step),
        }
        new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
        return new_state, metrics

    return train_step


def make_eval_step(
    model: nn.Module,
    loss_fn: LossFn,
    data_shards: int = 1,
    micro_batch: MicroBatch = "auto",
) -> Callable[[Any, Batch], Metrics]:
    """`(params, batch) -> sums over the real (mask=1) examples`: correct, loss and count.

    'Correct' is top-1 precision: the arg-max class has a positive label, which is accuracy
    for single-label data and stays meaningful for multi-label data. The forward pass runs in
    micro-batches on CPU (`models.micro_batched_apply`; the batch is split over
    `data_shards` devices); `micro_batch` as in `models.micro_batch_size`.
    """

    def eval_step(params: Any, batch: Batch) -> Metrics:
        logits = models.micro_batched_apply(
            model, params, batch["image"], micro_batch=micro_batch, data_shards=data_shards
        )  # [B, C]
        mask = batch["mask"].astype(jnp.float32)  # [B]
        top1 = jnp.argmax(logits, axis=-1)  # [B]
        correct = jnp.take_along_axis(batch["label"], top1[:, None], axis=-1)[:, 0] > 0
        return {
            "correct": jnp.sum(correct * mask),
            "loss": jnp.sum(loss_fn(logits, batch["label"]) * mask),
            "count": jnp.sum(mask),
        }

    return eval_step
