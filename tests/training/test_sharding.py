"""Mesh construction from config.mesh, the FSDP rule and batch checks."""

from __future__ import annotations

import jax
import pytest
from jax.sharding import PartitionSpec as P

from vit_jax import sharding


@pytest.mark.parametrize(
    "axes, expected",
    [
        ({"data": -1, "fsdp": 1}, {"data": 8, "fsdp": 1}),
        ({"data": -1, "fsdp": 4}, {"data": 2, "fsdp": 4}),
        ({"data": 2, "fsdp": -1}, {"data": 2, "fsdp": 4}),
        ({"fsdp": 8}, {"data": 1, "fsdp": 8}),
    ],
)
def test_mesh_shape(axes, expected):
    assert sharding.mesh_shape(axes, 8) == expected


@pytest.mark.parametrize(
    "axes, message",
    [
        ({"data": -1, "fsdp": 3}, "cannot be split into groups of 3"),
        ({"data": 2, "fsdp": 2}, "needs 4 devices, but 8 are available"),
        ({"data": -1, "fsdp": -1}, "at most one -1"),
        ({"data": -1, "model": 2}, "Unknown mesh axes"),
    ],
)
def test_bad_mesh(axes, message):
    with pytest.raises(sharding.MeshError, match=message):
        sharding.mesh_shape(axes, 8)


def test_make_mesh_orders_axes():
    mesh = sharding.make_mesh({"fsdp": 4, "data": -1})
    assert mesh.axis_names == ("data", "fsdp") and dict(mesh.shape) == {"data": 2, "fsdp": 4}
    assert mesh.devices.size == jax.device_count()


@pytest.mark.parametrize(
    "shape, fsdp, spec",
    [
        ((768, 3072), 4, P(None, "fsdp")),  # The largest divisible dimension.
        ((3072, 768), 4, P("fsdp", None)),
        ((12, 64, 64), 4, P(None, "fsdp", None)),  # Ties: the first.
        ((10,), 4, P()),  # Nothing divisible: replicated.
        ((), 4, P()),
        ((768, 3072), 1, P()),
        ((6, 7), 2, P("fsdp", None)),
    ],
)
def test_fsdp_spec(shape, fsdp, spec):
    assert sharding.fsdp_spec(shape, fsdp) == spec


def test_check_batch():
    mesh = sharding.make_mesh({"data": -1})
    sharding.check_batch("config.batch", 64, mesh, accum_steps=8)
    with pytest.raises(sharding.MeshError, match="not divisible by 8 data shards"):
        sharding.check_batch("config.batch", 12, mesh)
    with pytest.raises(sharding.MeshError, match="x accum_steps=4 = 32"):
        sharding.check_batch("config.batch", 48, mesh, accum_steps=4)
