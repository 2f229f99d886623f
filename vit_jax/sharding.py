"""The device mesh and the declared sharding rules of the training state and the batches.

Batches: `batch_sharding` splits the leading dimension over the data axes; `local_rows` says
which contiguous rows of a global batch this process reads and `to_global` assembles them
into global arrays.

`config.mesh` maps axis names to sizes, e.g. `{'data': -1, 'fsdp': 1}`; -1 takes all devices
left over. Batches are split over every axis (each device sees `batch / num_devices` images).
Parameters and optimizer state are replicated over 'data' and, ZeRO-3 style, split over
'fsdp': each array is cut along its largest dimension that the 'fsdp' size divides (rule
`fsdp_spec`); arrays with no such dimension stay replicated.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from vit_jax.errors import ConfigError

MESH_AXES = ("data", "fsdp")  # Mesh axes in device order: 'fsdp' neighbours are adjacent.
DATA_AXES = ("data", "fsdp")  # The axes a batch is split over.
FSDP_AXIS = "fsdp"  # The axis parameters and optimizer state are split over.


class MeshError(ConfigError):
    """A `config.mesh` or batch size that does not fit the devices; the message says why."""


def mesh_shape(axes: Mapping[str, int], num_devices: int) -> dict[str, int]:
    """Resolves -1 in `{'data': -1, 'fsdp': 2}` so the sizes multiply to `num_devices`."""
    unknown = set(axes) - set(MESH_AXES)
    if unknown:
        raise MeshError(f"Unknown mesh axes {sorted(unknown)}; config.mesh takes {MESH_AXES}.")
    sizes = {name: int(axes.get(name, 1)) for name in MESH_AXES}
    fill = [name for name, size in sizes.items() if size == -1]
    if len(fill) > 1 or any(size < 1 and size != -1 for size in sizes.values()):
        raise MeshError(
            f"config.mesh {dict(axes)} must give each axis a positive size, with at most one -1."
        )
    fixed = math.prod(size for size in sizes.values() if size != -1)
    if fill:
        if num_devices % fixed:
            raise MeshError(
                f"config.mesh {dict(axes)}: {num_devices} devices cannot be split into groups "
                f"of {fixed}."
            )
        sizes[fill[0]] = num_devices // fixed
    if math.prod(sizes.values()) != num_devices:
        raise MeshError(
            f"config.mesh {dict(axes)} needs {math.prod(sizes.values())} devices, but "
            f"{num_devices} are available; use -1 for one axis to fill the rest."
        )
    return sizes


def num_slices(devices: Sequence[Any]) -> int:
    """TPU slices (ICI islands joined over the data-centre network) that `devices` span."""
    return len({getattr(d, "slice_index", 0) for d in devices})


def make_mesh(axes: Mapping[str, int], devices: Sequence[Any] | None = None) -> Mesh:
    """A mesh over `devices` (default: all devices of all processes) with `MESH_AXES`.

    Within a slice the devices are laid out along the physical torus (`create_device_mesh`).
    Over several TPU slices the 'data' axis crosses the slow data-centre network (only the
    gradient all-reduce does) and 'fsdp' stays inside each slice, where its all-gathers run
    on the fast interconnect.
    """
    devices = jax.devices() if devices is None else list(devices)
    sizes = mesh_shape(axes, len(devices))
    shape = tuple(sizes[name] for name in MESH_AXES)
    slices = num_slices(devices)
    if slices > 1:
        if sizes["data"] % slices:
            raise MeshError(
                f"config.mesh {dict(axes)} resolves to {sizes}, but the {len(devices)} devices "
                f"form {slices} slices and 'data' must be a multiple of {slices} (only 'data' "
                "crosses slices); make mesh.fsdp divide the devices of one slice "
                f"({len(devices) // slices})."
            )
        ici = (sizes["data"] // slices, sizes["fsdp"])  # Inside each slice.
        dcn = (slices, 1)  # Between slices: data parallel only.
        grid = mesh_utils.create_hybrid_device_mesh(
            ici, dcn, devices, allow_split_physical_axes=True
        )
    else:
        try:
            grid = mesh_utils.create_device_mesh(shape, devices, allow_split_physical_axes=True)
        except (AssertionError, ValueError, NotImplementedError):
            # No physical layout for this shape (e.g. TPU v4 cores not in megacore mode): the
            # devices in their given order still make a correct, if slower, mesh.
            grid = np.asarray(devices, dtype=object).reshape(shape)
    return Mesh(grid, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES))


def fsdp_spec(shape: Sequence[int], fsdp_size: int) -> PartitionSpec:
    """Splits the largest dimension that `fsdp_size` divides (the first on ties) over 'fsdp'."""
    if fsdp_size == 1:
        return PartitionSpec()
    candidates = [(size, -axis) for axis, size in enumerate(shape) if size % fsdp_size == 0]
    if not candidates:
        return PartitionSpec()
    _, neg_axis = max(candidates)
    spec: list[str | None] = [None] * len(shape)
    spec[-neg_axis] = FSDP_AXIS
    return PartitionSpec(*spec)


def fsdp_shardings(tree: Any, mesh: Mesh) -> Any:
    """NamedShardings by `fsdp_spec` for every array (or ShapeDtypeStruct) leaf of `tree`."""
    fsdp_size = mesh.shape[FSDP_AXIS]
    return jax.tree.map(lambda x: NamedSharding(mesh, fsdp_spec(np.shape(x), fsdp_size)), tree)


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh, data_axes: Sequence[str] = DATA_AXES) -> NamedSharding:
    """Leading (batch) dimension split over those of `data_axes` the mesh has (else replicated)."""
    axes = tuple(a for a in data_axes if a in mesh.axis_names)
    return NamedSharding(mesh, PartitionSpec(axes if axes else None))


def local_rows(global_batch: int, sharding: NamedSharding, key: str) -> tuple[int, int, int]:
    """(local batch, shard index, shard count) of this process for a `global_batch`.

    Each process holds a contiguous block of rows of the global batch; that block's position
    is the process's data shard, so processes that share rows (e.g. a model axis spanning
    hosts) read the same examples. Raises MeshError when `global_batch` does not split evenly
    over the data devices.
    """
    mesh = sharding.mesh
    axes = sharding.spec[0] or ()
    axes = (axes,) if isinstance(axes, str) else tuple(axes)
    num_data = math.prod(mesh.shape[a] for a in axes)
    if global_batch <= 0 or global_batch % num_data:
        lower = max(num_data, global_batch // num_data * num_data)
        raise MeshError(
            f"{key}={global_batch} must be a positive multiple of {num_data}, the number of "
            f"devices along the mesh's data axes {axes} ({jax.process_count()} process(es) x "
            f"{num_data // jax.process_count() or 1} per process); use e.g. {lower} or "
            f"{lower + num_data}."
        )
    rows = sorted(
        {
            (s[0].start or 0, global_batch if s[0].stop is None else s[0].stop)
            for s in sharding.addressable_devices_indices_map((global_batch,)).values()
        }
    )
    start, stop = rows[0][0], rows[-1][1]
    local = stop - start
    covered = sum(b - a for a, b in rows)
    if covered != local or global_batch % local or start % local:
        raise MeshError(
            f"This process's rows of the batch are not one evenly sized block ({rows}); "
            "lay out the mesh so each process owns a contiguous slice of the data axes."
        )
    return local, start // local, global_batch // local


def to_global(
    batch: dict[str, np.ndarray], sharding: NamedSharding, global_batch: int
) -> dict[str, jax.Array]:
    """This process's rows -> global arrays of `global_batch` rows, sharded over the mesh."""
    return {
        k: jax.make_array_from_process_local_data(sharding, v, (global_batch, *v.shape[1:]))
        for k, v in batch.items()
    }


def num_data_shards(mesh: Mesh) -> int:
    return math.prod(mesh.shape[name] for name in DATA_AXES)


def check_batch(name: str, batch: int, mesh: Mesh, accum_steps: int = 1) -> None:
    """Raises MeshError unless `batch` splits into `accum_steps` equal parts over the devices."""
    shards = num_data_shards(mesh) * accum_steps
    if batch <= 0 or batch % shards:
        detail = f"{num_data_shards(mesh)} data shards (mesh {dict(mesh.shape)})" + (
            f" x accum_steps={accum_steps}" if accum_steps > 1 else ""
        )
        raise MeshError(
            f"{name}={batch} is not divisible by {detail} = {shards}; pick a multiple of {shards}."
        )
