"""Compiles a config's training and eval steps for a topology and reads their per-chip costs.

The steps are the `Trainer`'s own jitted functions (the ones `python -m vit_jax.train` runs),
lowered with abstract inputs laid out over the topology's mesh, so nothing is allocated and
no dataset is opened. XLA's numbers are per device, i.e. per chip: SPMD compiles one program
that every chip runs on its own shard.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import ml_collections

from vit_jax import sharding
from vit_jax.data.presets import DATASET_PRESETS
from vit_jax.errors import ConfigError
from vit_jax.plan.topology import Topology
from vit_jax.trainer import Trainer

DEFAULT_HEADROOM = 0.1  # Fraction of HBM kept free for the runtime, fragmentation, buffers.


@dataclasses.dataclass(frozen=True)
class DatasetShape:
    """The two facts of a dataset the `Trainer` needs, without opening it."""

    num_classes: int
    image_size: int


def dataset_shape(config: ml_collections.ConfigDict, num_classes: int | None) -> DatasetShape:
    """Classes and image size from the config's dataset preset and `pp.crop`, or the flag."""
    preset = DATASET_PRESETS.get(config.dataset)
    if num_classes is None:
        if preset is None:
            raise ConfigError(
                f"Dataset {config.dataset!r} has no preset, so its class count is unknown "
                f"without reading it: pass --num_classes=N (presets: {', '.join(DATASET_PRESETS)})."
            )
        num_classes = preset.num_classes
    image_size = config.pp.crop or (preset.crop if preset else 0)
    if not image_size:
        raise ConfigError(
            f"Dataset {config.dataset!r} has no preset image size: set --config.pp.crop=SIZE."
        )
    if num_classes < 1:
        raise ConfigError(f"--num_classes must be positive, got {num_classes}.")
    return DatasetShape(num_classes, image_size)


@dataclasses.dataclass(frozen=True)
class StepCost:
    """Per-chip memory and work of one compiled step, from XLA's analyses."""

    argument_bytes: int  # Inputs resident during the step (state shards, batch shard).
    output_bytes: int
    alias_bytes: int  # Outputs written into donated inputs (the new train state).
    temp_bytes: int  # Activations, gradients, collectives' buffers.
    flops: float  # Per chip, per step (XLA's cost model).
    compile_seconds: float

    @property
    def total_bytes(self) -> int:
        """Peak live bytes: aliased outputs reuse their inputs' memory."""
        return self.argument_bytes + self.output_bytes - self.alias_bytes + self.temp_bytes


def compile_step(jitted: Any, *args: Any) -> StepCost:
    """Lowers and compiles `jitted` for abstract `args`; its memory and FLOP analyses."""
    start = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    seconds = time.perf_counter() - start
    memory = compiled.memory_analysis()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost  # Older jax: one dict per program.
    return StepCost(
        argument_bytes=int(memory.argument_size_in_bytes),
        output_bytes=int(memory.output_size_in_bytes),
        alias_bytes=int(memory.alias_size_in_bytes),
        temp_bytes=int(memory.temp_size_in_bytes),
        flops=float((cost or {}).get("flops", 0.0)),
        compile_seconds=seconds,
    )


@dataclasses.dataclass(frozen=True)
class Plan:
    """A config's train (and eval) step compiled for a topology, judged against its chip."""

    topology: Topology
    mesh: dict[str, int]
    batch: int
    accum_steps: int
    remat: bool
    scan_layers: bool
    train: StepCost
    eval: StepCost | None
    headroom: float

    @property
    def hbm_bytes(self) -> int:
        return self.topology.chip.hbm_bytes

    @property
    def bytes_per_chip(self) -> int:
        """The larger of the two steps' peaks (they never run at the same time)."""
        return max(self.train.total_bytes, self.eval.total_bytes if self.eval else 0)

    @property
    def fits(self) -> bool:
        return self.bytes_per_chip <= (1.0 - self.headroom) * self.hbm_bytes

    @property
    def step_seconds_bound(self) -> float:
        """No step is faster than its FLOPs at the chip's bf16 peak (a lower bound)."""
        return self.train.flops / self.topology.chip.peak_flops

    @property
    def images_per_second_ceiling(self) -> float:
        """Global img/s at that bound: the most this run could reach on these chips."""
        seconds = self.step_seconds_bound
        return self.batch / seconds if seconds > 0 else float("inf")

    def to_json(self) -> dict[str, Any]:
        def step(cost: StepCost | None) -> dict[str, Any] | None:
            if cost is None:
                return None
            return {**dataclasses.asdict(cost), "total_bytes": cost.total_bytes}

        return {
            "topology": self.topology.name,
            "num_slices": self.topology.num_slices,
            "chips": self.topology.chips,
            "device_kind": self.topology.device_kind,
            "mesh": self.mesh,
            "batch": self.batch,
            "accum_steps": self.accum_steps,
            "remat": self.remat,
            "scan_layers": self.scan_layers,
            "bytes_per_chip": self.bytes_per_chip,
            "hbm_bytes_per_chip": self.hbm_bytes,
            "headroom": self.headroom,
            "fits": self.fits,
            "flops_per_step": self.train.flops,  # Per chip.
            "peak_flops_per_chip": self.topology.chip.peak_flops,
            "step_seconds_lower_bound": self.step_seconds_bound,
            "images_per_second_ceiling": self.images_per_second_ceiling,
            "compile_seconds": self.train.compile_seconds,
            "train": step(self.train),
            "eval": step(self.eval),
        }


def plan(
    config: ml_collections.ConfigDict,
    topology: Topology,
    shape: DatasetShape,
    *,
    with_eval: bool = True,
    headroom: float = DEFAULT_HEADROOM,
) -> Plan:
    """Builds the run's `Trainer` over `topology` and compiles its steps; see the module."""
    from vit_jax.train import check_config  # The checks `train` makes before it starts.

    mesh = sharding.make_mesh(config.mesh, topology.devices)
    check_config(config, mesh)
    trainer = Trainer(config, mesh, shape)
    train = compile_step(
        trainer.train_step, trainer.abstract_state, trainer.abstract_batch(config.batch)
    )
    evaluation = None
    if with_eval:
        evaluation = compile_step(
            trainer.eval_step,
            trainer.abstract_state.params,
            trainer.abstract_batch(config.batch_eval, train=False),
        )
    return Plan(
        topology=topology,
        mesh=dict(mesh.shape),
        batch=config.batch,
        accum_steps=config.accum_steps,
        remat=bool(config.model.remat),
        scan_layers=bool(config.model.scan_layers),
        train=train,
        eval=evaluation,
        headroom=headroom,
    )
