"""The Trainer's steps compile for TPU topologies; per-chip numbers follow the sharding."""

from __future__ import annotations

import dataclasses
import math

import jax
import numpy as np
import pytest

from tests.plan.conftest import small_config
from vit_jax import plan, sharding
from vit_jax.training.trainer import Trainer


def compile_for(config, topology, num_chips=None, with_eval=False):
    if num_chips is not None:  # The same chip type, fewer of them (one: the unsharded program).
        topology = dataclasses.replace(topology, devices=topology.devices[:num_chips])
    shape = plan.dataset_shape(config, None)
    return plan.plan(config, topology, shape, with_eval=with_eval)


def state_bytes(config, topology) -> int:
    """Bytes of the whole (unsharded) train state: parameters and optimizer state."""
    mesh = sharding.make_mesh(config.mesh, topology.devices)
    trainer = Trainer(config, mesh, plan.dataset_shape(config, None))
    leaves = jax.tree.leaves(trainer.abstract_state)
    return sum(math.prod(x.shape) * np.dtype(x.dtype).itemsize for x in leaves)


def test_v5e_sharding_divides_the_per_chip_numbers(libtpu):
    topology = plan.get_topology("v5e:2x2")
    assert (topology.chips, topology.chip.hbm_bytes) == (4, 16 * 2**30)
    single = compile_for(small_config({"data": -1, "fsdp": 1}, batch=4), topology, num_chips=1)
    data = compile_for(small_config({"data": -1, "fsdp": 1}), topology)
    fsdp = compile_for(small_config({"data": 1, "fsdp": 4}), topology, with_eval=True)

    # Data parallel: every chip holds the whole state and does one chip's share of the work.
    assert data.train.argument_bytes == pytest.approx(single.train.argument_bytes, rel=0.05)
    assert data.train.xla_flops == pytest.approx(single.train.xla_flops, rel=0.1)
    assert data.train.matmul_flops == pytest.approx(single.train.matmul_flops, rel=1e-6)
    # FSDP over 4 chips: a quarter of the state per chip (TPU tiles pad small arrays a little).
    assert single.train.argument_bytes / fsdp.train.argument_bytes == pytest.approx(4, rel=0.1)
    full = state_bytes(small_config({"data": -1, "fsdp": 1}), topology)
    assert fsdp.train.argument_bytes == pytest.approx(full / 4, rel=0.1)
    # The new state is written into the donated old one.
    assert fsdp.train.alias_bytes == pytest.approx(fsdp.train.output_bytes, rel=0.05)
    assert fsdp.eval is not None and fsdp.eval.matmul_flops > 0
    report = fsdp.to_json()
    assert report["device_kind"] == "TPU v5 lite" and report["fits"] is True
    assert report["bytes_per_chip"] == fsdp.train.total_bytes  # The train step is the larger.


def test_megacore_v4_has_one_device_per_chip(libtpu):
    topology = plan.get_topology("v4:2x2x1")
    assert topology.chips == 4  # 8 TensorCores, driven as 4 megacore devices.
    result = compile_for(small_config({"data": 2, "fsdp": 2}), topology)
    assert result.mesh == {"data": 2, "fsdp": 2}
    assert result.to_json()["hbm_bytes_per_chip"] == 32 * 2**30
    assert result.train.xla_flops > 0 and result.train.argument_bytes > 0


def test_multi_slice_keeps_fsdp_inside_a_slice(libtpu):
    topology = plan.get_topology("v5e:2x2", num_slices=2)
    assert topology.chips == 8
    mesh = sharding.make_mesh({"data": -1, "fsdp": 4}, topology.devices)
    assert dict(mesh.shape) == {"data": 2, "fsdp": 4}
    for row in mesh.devices:  # One fsdp group: all on one slice (the fast interconnect).
        assert len({d.slice_index for d in row}) == 1
    assert {row[0].slice_index for row in mesh.devices} == {0, 1}  # 'data' crosses slices.
    with pytest.raises(sharding.MeshError, match="slices"):
        sharding.make_mesh({"data": 1, "fsdp": -1}, topology.devices)
    result = compile_for(small_config({"data": -1, "fsdp": 4}), topology)
    assert result.train.xla_flops > 0


def test_flops_count_every_loop_iteration(libtpu):
    """XLA counts a loop body once; the matmul count does not depend on how layers run."""
    topology = plan.get_topology("v5e:2x2")
    results = {}
    for scan, accum in [(False, 1), (True, 1), (True, 2)]:
        config = small_config({"data": -1, "fsdp": 1})
        config.model.transformer.num_layers = 3
        # Every token through every layer: with the class token the last unscanned layer
        # computes that token alone (models.Encoder's num_outputs), a scanned one all.
        config.model.classifier = "gap"
        config.model.scan_layers, config.accum_steps = scan, accum
        results[scan, accum] = compile_for(config, topology).train
    plain = results[False, 1]
    for cost in results.values():
        assert cost.matmul_flops == pytest.approx(plain.matmul_flops, rel=1e-6)
    assert plain.xla_flops == pytest.approx(plain.matmul_flops, rel=0.2)  # + elementwise ops.
    assert results[True, 2].xla_flops < 0.5 * plain.matmul_flops  # Why XLA's is not used.
    # With the class token, the unrolled last block computes that token alone; scanned, all.
    token = {}
    for scan in (False, True):
        config = small_config({"data": -1, "fsdp": 1})
        config.model.transformer.num_layers = 3
        config.model.scan_layers = scan
        token[scan] = compile_for(config, topology).train.matmul_flops
    assert token[False] < token[True]
