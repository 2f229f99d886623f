"""How a global batch is laid out over the mesh, and host batches -> global jax.Arrays.

The batch dimension is sharded over the mesh's data axes. Each process holds a contiguous
block of rows of the global batch; that block's position is the process's data shard, so
processes that share rows (e.g. a model axis spanning hosts) read the same examples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def batch_sharding(mesh: Mesh, data_axes: Sequence[str]) -> NamedSharding:
    """Shards dim 0 over those of `data_axes` that the mesh has (replicated if none)."""
    axes = tuple(a for a in data_axes if a in mesh.axis_names)
    return NamedSharding(mesh, PartitionSpec(axes if axes else None))


def local_rows(global_batch: int, sharding: NamedSharding, key: str) -> tuple[int, int, int]:
    """(local batch, shard index, shard count) of this process for a `global_batch`.

    Raises ValueError when `global_batch` does not split evenly over the data devices.
    """
    mesh = sharding.mesh
    axes = sharding.spec[0] or ()
    axes = (axes,) if isinstance(axes, str) else tuple(axes)
    num_data = math.prod(mesh.shape[a] for a in axes)
    if global_batch <= 0 or global_batch % num_data:
        lower = max(num_data, global_batch // num_data * num_data)
        raise ValueError(
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
        raise ValueError(
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
