"""TPU topologies without TPUs: abstract devices from libtpu's compiler, and each chip's specs.

`libtpu` (the `[tpu]` extra) ships XLA's TPU compiler, which can compile ahead of time, on a
CPU host, for a slice that is not there (`jax.experimental.topologies`). A topology name is
`<chip>:<shape>`: `v5e:4x4` is 16 v5e chips, `v4:4x4x4` 64 v4 chips (a "v4-128", counted in
cores), `v6e:8x8` 64 v6e chips.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

from vit_jax.errors import ConfigError

GIB = 2**30


class TopologyError(ConfigError):
    """A topology that cannot be built here (unknown name, libtpu missing); says what to do."""


@dataclasses.dataclass(frozen=True)
class Chip:
    """What one chip of a TPU generation offers the program compiled for it."""

    hbm_bytes: int  # High-bandwidth memory per chip.
    peak_flops: float  # bfloat16 matmul peak, FLOP/s per chip.
    megacore: bool  # Two TensorCores driven as one device (v4, v5p).


# Google Cloud's published per-chip figures (cloud.google.com/tpu/docs/system-architecture-tpu-vm).
CHIPS: dict[str, Chip] = {
    "v4": Chip(32 * GIB, 275e12, megacore=True),
    "v5e": Chip(16 * GIB, 197e12, megacore=False),
    "v5p": Chip(95 * GIB, 459e12, megacore=True),
    "v6e": Chip(32 * GIB, 918e12, megacore=False),
}
EXAMPLES = ("v5e:2x2", "v5e:4x4", "v5e:16x16", "v4:2x2x1", "v4:4x4x4", "v5p:4x4x4", "v6e:8x8")


@dataclasses.dataclass(frozen=True)
class Topology:
    """The abstract devices of a (multi-)slice and the chip they run on."""

    name: str  # As given, e.g. 'v5e:4x4'.
    generation: str  # Key of CHIPS.
    chip: Chip
    num_slices: int
    devices: Sequence[Any]  # One jax device per chip (megacore chips included).
    device_kind: str  # e.g. 'TPU v5 lite'.

    @property
    def chips(self) -> int:
        return len(self.devices)


def _generation(name: str) -> str:
    generation, _, shape = name.partition(":")
    dims = shape.split("x")
    if generation not in CHIPS or not shape or not all(d.isdigit() and int(d) > 0 for d in dims):
        raise TopologyError(
            f"Unknown topology {name!r}: give <chip>:<shape> with chip one of "
            f"{', '.join(CHIPS)} and a shape of chips per axis. Valid examples: "
            f"{', '.join(EXAMPLES)} (a 'v4-128' of 128 cores is v4:4x4x4)."
        )
    return generation


def get_topology(name: str, num_slices: int = 1) -> Topology:
    """The devices of `num_slices` slices of topology `name`, from libtpu's compiler."""
    generation = _generation(name)
    if num_slices < 1:
        raise TopologyError(f"--num_slices must be at least 1, got {num_slices}.")
    # Compiling opens no TPU, so concurrent planners need not take libtpu's one-process lock.
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    # There is no TPU VM to ask: no metadata-server query, and no worker-address warnings.
    os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
    os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
    try:
        import libtpu  # noqa: F401  (the compiler; absent without the [tpu] extra)
        from jax.experimental import topologies
    except ImportError:
        raise TopologyError(
            "Compiling for a TPU topology needs libtpu, XLA's TPU compiler, which is not "
            'installed: run `pip install -e ".[tpu]"` (it pins libtpu to the installed jax).'
        ) from None
    chip = CHIPS[generation]
    options: dict[str, Any] = {"chip_config_name": "megacore"} if chip.megacore else {}
    if num_slices > 1:
        options["num_slices"] = num_slices
    try:
        description = topologies.get_topology_desc(topology_name=name, platform="tpu", **options)
    except Exception as e:  # libtpu reports a bad shape as a runtime error.
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TopologyError(
            f"libtpu cannot build topology {name!r} ({first}). Valid examples: "
            f"{', '.join(EXAMPLES)}."
        ) from None
    devices = list(description.devices)
    return Topology(name, generation, chip, num_slices, devices, devices[0].device_kind)
