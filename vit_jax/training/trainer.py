"""The jitted functions, shardings and initial state of one training run.

`Trainer(config, mesh, dataset_info)` builds the model, the optimizer, the sharded layout of
the train state (parameters and optimizer state split over 'fsdp' by `sharding.fsdp_spec`)
and the jitted train/eval steps; `training.loop.train_and_evaluate` drives it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from vit_jax import checkpoint, models, sharding
from vit_jax.models import backend_tuning
from vit_jax.training import losses, optim, runtime
from vit_jax.training.step import (
    TrainState,
    default_accum_steps,
    make_eval_step,
    make_train_step,
)


def model_from_config(
    model_config: ml_collections.ConfigDict, num_classes: int, platform: str | None = None
):
    """`config.model` (with `dtype` as a string such as 'bfloat16') -> VisionTransformer.

    `platform` ('cpu', 'gpu', 'tpu'): the devices the model will run on, when they are not
    this process's default backend (a TPU program compiled ahead of time on a CPU host); the
    'auto' attention, matmul outputs and matmul library then become choices that need no device
    to inspect (`models.backend_tuning.model_fields_compiled_for`), not the host's.
    """
    fields = model_config.to_dict()
    fields["dtype"] = jnp.dtype(fields["dtype"])
    if platform not in (None, jax.default_backend()):
        fields.update(backend_tuning.model_fields_compiled_for(fields, [platform]))
    return models.build_model(fields, num_classes=num_classes)


def pretrained_path(config: ml_collections.ConfigDict) -> str:
    """`<pretrained_dir>/<model_name>.npz` (local or gs://)."""
    return f"{config.pretrained_dir.rstrip('/')}/{config.model.model_name}.npz"


def _check_pretrained_exists(config: ml_collections.ConfigDict) -> None:
    """A missing local pre-trained file is most often a first job not run yet: say which."""
    path = pretrained_path(config)
    if "://" in path or os.path.exists(path):
        return  # Remote paths (gs://, https://) are reported by checkpoint.load.
    raise checkpoint.CheckpointError(
        f"No pre-trained checkpoint at {path} (config.pretrained_dir="
        f"{config.pretrained_dir!r} plus config.model.model_name). Fine-tuning a model of this "
        "project starts from the .npz its training run saved in its workdir (config.save_npz): "
        "run that job first (for configs/digits_finetune.py: python -m vit_jax.train --config "
        "configs/digits.py --workdir workdirs/digits), or pass --config.pretrained_dir=DIR for "
        f"a directory holding {os.path.basename(path)}. Published checkpoints: "
        f"{checkpoint.PUBLISHED_LOCATIONS}."
    )


def evaluate(eval_step: Any, params: Any, batches: Iterable[dict[str, jax.Array]]):
    """`test_accuracy` and `test_loss` over one pass of the eval iterator."""
    totals = None
    for batch in batches:
        sums = eval_step(params, batch)
        totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
    totals = jax.device_get(totals)
    count = max(float(totals["count"]), 1.0)
    return {
        "test_accuracy": float(totals["correct"]) / count,
        "test_loss": float(totals["loss"]) / count,
    }


class Trainer:
    """The jitted functions and shardings of one run; `train_and_evaluate` drives it."""

    def __init__(self, config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh, info: Any):
        self.config = config
        self.mesh = mesh
        platform = mesh.devices.flat[0].platform  # 'tpu' when planning a TPU run on a CPU host.
        self.model = model_from_config(config.model, info.num_classes, platform)
        self.image_size = info.image_size
        self.tx, schedule = optim.make_optimizer(config)
        loss_fn = losses.get_loss(config.loss)

        rng_init, rng_train = jax.random.split(jax.random.key(config.seed))
        self._init_args = (rng_init, jax.random.key_data(rng_train))
        abstract = jax.eval_shape(self._init, *self._init_args)
        self.state_shardings = TrainState(
            step=sharding.replicated(mesh),
            params=sharding.fsdp_shardings(abstract.params, mesh),
            opt_state=sharding.fsdp_shardings(abstract.opt_state, mesh),
            rng=sharding.replicated(mesh),
        )
        self.abstract_state = jax.tree.map(
            lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
            abstract,
            self.state_shardings,
        )
        self.accum_steps = config.accum_steps
        if self.accum_steps is None:  # Unset: the backend's choice, for its caches.
            self.accum_steps = default_accum_steps(
                platform,
                images=config.batch // sharding.num_data_shards(mesh),
                params=abstract.params,
                mlp_dim=config.model.transformer.mlp_dim,
                dtype=config.model.dtype,
                matmul_library=self.model.matmul_library,
            )
        self.batch_sharding = batch_sharding = sharding.batch_sharding(mesh)
        microbatch_sharding = jax.sharding.NamedSharding(
            mesh, jax.sharding.PartitionSpec(None, sharding.DATA_AXES)
        )
        train_step = make_train_step(
            self.model,
            self.tx,
            loss_fn,
            schedule,
            accum_steps=self.accum_steps,
            microbatch_sharding=microbatch_sharding,
            grad_shardings=self.state_shardings.params,
        )
        self.train_step = jax.jit(
            train_step,
            in_shardings=(self.state_shardings, batch_sharding),
            out_shardings=(self.state_shardings, sharding.replicated(mesh)),
            donate_argnums=(0,),
        )
        self.eval_step = jax.jit(
            make_eval_step(
                self.model,
                loss_fn,
                sharding.num_data_shards(mesh),
                # Micro-batching follows the mesh's devices, not the host's backend.
                micro_batch=(
                    "auto" if backend_tuning.for_platform(platform).micro_batch_tokens else None
                ),
            ),
            in_shardings=(self.state_shardings.params, batch_sharding),
            out_shardings=sharding.replicated(mesh),
        )

    def abstract_batch(self, batch: int, *, train: bool = True) -> dict[str, Any]:
        """ShapeDtypeStructs of a global batch as the input pipeline delivers it, sharded."""
        spec = lambda shape: jax.ShapeDtypeStruct(shape, jnp.float32, sharding=self.batch_sharding)
        size = self.image_size
        fields = {
            "image": spec((batch, size, size, 3)),  # [B, H, W, 3]
            "label": spec((batch, self.model.num_classes)),  # [B, C]
        }
        return fields if train else {**fields, "mask": spec((batch,))}  # mask [B]

    def _init_params(self, rng_init: jax.Array) -> Any:
        images = jnp.zeros((1, self.image_size, self.image_size, 3), jnp.float32)
        return self.model.init({"params": rng_init}, images, train=False)["params"]

    def _init(self, rng_init: jax.Array, rng_train: jax.Array) -> TrainState:
        params = self._init_params(rng_init)
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            opt_state=self.tx.init(params),
            rng=rng_train,
        )

    def initial_state(self) -> TrainState:
        """Fresh parameters, or those of `config.pretrained_dir` with a fresh head."""
        if not self.config.pretrained_dir:
            return jax.jit(self._init, out_shardings=self.state_shardings)(*self._init_args)
        _check_pretrained_exists(self.config)  # Before compiling anything.
        params = self._pretrained_params()
        opt_state = jax.jit(self.tx.init, out_shardings=self.state_shardings.opt_state)(params)
        rng_train = self._init_args[1]
        return TrainState(
            step=jax.device_put(jnp.zeros((), jnp.int32), self.state_shardings.step),
            params=params,
            opt_state=opt_state,
            rng=jax.device_put(rng_train, self.state_shardings.rng),
        )

    def _pretrained_params(self) -> Any:
        """The `.npz` parameters with a fresh head, each array placed shard by shard.

        Only the head (and pre-logits) are initialised, on the devices (XLA drops the rest of
        the initialiser); every other array's shape comes from `jax.eval_shape`. The file is
        read once on the host, and each array is handed to the devices in its target
        sharding and then dropped, so the host holds at most one copy and each device only
        its shards (never the whole model, which FSDP exists to avoid).
        """
        rng_init = self._init_args[0]
        fresh = ("head", "pre_logits")  # What load_pretrained may take from the initialiser.
        init_fresh = jax.jit(
            lambda rng: {k: v for k, v in self._init_params(rng).items() if k in fresh},
            out_shardings=sharding.replicated(self.mesh),
        )
        init_params = {
            **jax.eval_shape(self._init_params, rng_init),  # ShapeDtypeStructs.
            **jax.device_get(init_fresh(rng_init)),  # Small: [D, classes] and [D, D].
        }
        params = checkpoint.load_pretrained(
            pretrained_path=pretrained_path(self.config),
            init_params=init_params,
            model_config=self.config.model,
            image_size=self.image_size,
            report=runtime.print_primary,  # What was loaded and changed, for the console.
        )
        del init_params
        leaves, treedef = jax.tree.flatten(params)
        del params  # The leaves list holds the only host copy; each is freed once placed.
        shardings = treedef.flatten_up_to(self.state_shardings.params)
        placed = []
        for i, target in enumerate(shardings):
            host = np.asarray(leaves[i], np.float32)
            leaves[i] = None
            placed.append(
                jax.make_array_from_callback(host.shape, target, lambda index, x=host: x[index])
            )
            del host
        return jax.tree.unflatten(treedef, placed)

    def host_params(self, state: TrainState) -> Any:
        """The parameters as NumPy arrays on every process (gathered from their shards)."""
        gather = jax.jit(lambda p: p, out_shardings=sharding.replicated(self.mesh))
        return jax.device_get(gather(state.params))
