"""Compiles a config's training and eval steps for a topology and reads their per-chip costs.

The steps are the `Trainer`'s own jitted functions (the ones `python -m vit_jax.train` runs),
lowered with abstract inputs laid out over the topology's mesh, so nothing is allocated and
no dataset is opened. XLA's numbers are per device, i.e. per chip: SPMD compiles one program
that every chip runs on its own shard.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from typing import Any

import jax
import ml_collections
import numpy as np

from vit_jax import sharding
from vit_jax.data.presets import DATASET_PRESETS
from vit_jax.errors import ConfigError
from vit_jax.plan.flops import step_flops
from vit_jax.plan.topology import Topology
from vit_jax.training.trainer import Trainer

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
    # Per chip, per step: matmul FLOPs with every loop's trip count (`vit_jax.plan.flops`).
    matmul_flops: float
    # XLA's cost model, per chip, per step: all ops, but each loop body counted once (low for
    # scan_layers or accum_steps > 1); None when the program did not compile.
    xla_flops: float | None
    compile_seconds: float
    # The TPU compiler's out-of-memory message, when it refused the program: then the
    # temporaries are the ones it names and the other sizes are the inputs' shards.
    out_of_memory: str | None = None

    @property
    def total_bytes(self) -> int:
        """Peak live bytes: aliased outputs reuse their inputs' memory."""
        return self.argument_bytes + self.output_bytes - self.alias_bytes + self.temp_bytes


def shard_bytes(tree: Any) -> int:
    """Bytes one device holds of the sharded ShapeDtypeStructs in `tree` (before padding)."""
    return sum(
        math.prod(x.sharding.shard_shape(x.shape)) * np.dtype(x.dtype).itemsize
        for x in jax.tree.leaves(tree)
    )


_GIB_SUFFIX = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def _out_of_memory(
    error: Exception, args: tuple, donated: Any, matmul_flops: float, seconds: float
) -> StepCost:
    """The costs of a program the TPU compiler refused for want of HBM, from its message.

    The message reads e.g. "Ran out of memory on HBM, the total memory required for HLO
    temporaries (64.07G) exceeds available HBM (15.75G)".
    """
    message = str(error).strip().splitlines()[0]
    found = re.search(r"temporaries \(([\d.]+)([KMGT]?)\)", message)
    temps = int(float(found.group(1)) * _GIB_SUFFIX[found.group(2)]) if found else 0
    alias = shard_bytes(donated) if donated is not None else 0
    return StepCost(
        argument_bytes=shard_bytes(args),
        output_bytes=alias,
        alias_bytes=alias,
        temp_bytes=temps,
        matmul_flops=matmul_flops,
        xla_flops=None,
        compile_seconds=seconds,
        out_of_memory=message,
    )


def compile_step(jitted: Any, *args: Any, chips: int, donated: Any = None) -> StepCost:
    """Lowers and compiles `jitted` for abstract `args`; its memory and FLOP analyses.

    `chips`: the devices the work is split over (the batch is split over all of them).
    `donated`: the argument the step donates (its outputs overwrite it), used only to size a
    program the compiler refuses because it does not fit.
    """
    matmul_flops = step_flops(jitted, *args) / chips
    start = time.perf_counter()
    lowered = jitted.lower(*args)
    try:
        compiled = lowered.compile()
    except Exception as e:  # jax.errors.JaxRuntimeError; only an out-of-memory is expected.
        if "RESOURCE_EXHAUSTED" not in str(e):
            raise
        return _out_of_memory(e, args, donated, matmul_flops, time.perf_counter() - start)
    seconds = time.perf_counter() - start
    memory = compiled.memory_analysis()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost  # Older jax: one dict per program.
    return StepCost(
        argument_bytes=int(memory.argument_size_in_bytes),
        output_bytes=int(memory.output_size_in_bytes),
        alias_bytes=int(memory.alias_size_in_bytes),
        temp_bytes=int(memory.temp_size_in_bytes),
        matmul_flops=matmul_flops,
        xla_flops=float((cost or {}).get("flops", 0.0)),
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
        refused = self.train.out_of_memory or (self.eval and self.eval.out_of_memory)
        return not refused and self.bytes_per_chip <= (1.0 - self.headroom) * self.hbm_bytes

    @property
    def step_seconds_bound(self) -> float:
        """No step is faster than its matmul FLOPs at the chip's bf16 peak (a lower bound)."""
        return self.train.matmul_flops / self.topology.chip.peak_flops

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
            "flops_per_step": self.train.matmul_flops,  # Per chip, matmuls, loops counted.
            "xla_flops_per_step": self.train.xla_flops,  # Per chip, loop bodies once.
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
    from vit_jax.training.loop import check_config  # The checks a run makes first.

    mesh = sharding.make_mesh(config.mesh, topology.devices)
    check_config(config, mesh)
    trainer = Trainer(config, mesh, shape)
    train = compile_step(
        trainer.train_step,
        trainer.abstract_state,
        trainer.abstract_batch(config.batch),
        chips=topology.chips,
        donated=trainer.abstract_state,
    )
    evaluation = None
    if with_eval:
        evaluation = compile_step(
            trainer.eval_step,
            trainer.abstract_state.params,
            trainer.abstract_batch(config.batch_eval, train=False),
            chips=topology.chips,
        )
    return Plan(
        topology=topology,
        mesh=dict(mesh.shape),
        batch=config.batch,
        accum_steps=trainer.accum_steps,
        remat=bool(config.model.remat),
        scan_layers=bool(config.model.scan_layers),
        train=train,
        eval=evaluation,
        headroom=headroom,
    )
