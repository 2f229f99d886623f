"""Checksums: the same for any sharding, changed by any altered bit, and verified on restore
even where files are too large for a CRC (the array checksums then name the arrays)."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.training.reliability import faults
from tests.training.test_train_state import Position
from vit_jax import sharding
from vit_jax.checkpoint import integrity
from vit_jax.training.train_state import CheckpointDamaged, TrainCheckpointer


def test_array_checksums_ignore_the_sharding_and_see_every_bit():
    mesh = sharding.make_mesh({"data": 2, "fsdp": 4})
    values = np.random.default_rng(0).normal(size=(8, 16)).astype(np.float32)
    replicated = jax.device_put(values, sharding.replicated(mesh))
    split = jax.device_put(values, sharding.fsdp_shardings(jnp.asarray(values), mesh))
    tree = {"w": replicated, "bf16": jnp.asarray(values, jnp.bfloat16), "step": jnp.array(3)}
    sums = integrity.array_checksums(tree)
    assert sums["['w']"] == integrity.array_checksums({"w": split})["['w']"]

    flipped = values.copy()
    flipped.view(np.uint32)[5, 7] ^= 1  # One bit of one element.
    swapped = values.copy()
    swapped[[0, 1]] = swapped[[1, 0]]  # Same values, other places.
    for altered in (flipped, swapped):
        assert integrity.array_checksums({"w": jnp.asarray(altered)})["['w']"] != sums["['w']"]
    assert integrity.compare_checksums(sums, {**sums, "['step']": "0" * 16}) == ["['step']"]


def test_file_manifest_names_a_missing_truncated_or_changed_file(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("a.bin", "sub/b.bin"):
        (tmp_path / name).write_bytes(bytes(range(200)))
    integrity.write_file_manifest(tmp_path)
    assert integrity.verify_file_manifest(tmp_path)

    faults.garble(str(tmp_path / "a.bin"))
    with pytest.raises(integrity.Damage, match="contents changed") as error:
        integrity.verify_file_manifest(tmp_path)
    assert error.value.path == str(tmp_path / "a.bin")
    faults.truncate(str(tmp_path / "a.bin"))
    with pytest.raises(integrity.Damage, match="100 bytes where 200 were written"):
        integrity.verify_file_manifest(tmp_path)
    (tmp_path / "a.bin").write_bytes(bytes(range(200)))  # Repaired: intact again.
    assert integrity.verify_file_manifest(tmp_path)
    os.remove(tmp_path / "sub" / "b.bin")
    with pytest.raises(integrity.Damage, match="missing") as error:
        integrity.verify_file_manifest(tmp_path)
    assert error.value.path == str(tmp_path / "sub" / "b.bin")


def test_large_array_files_are_checked_by_the_array_checksums(tmp_path, monkeypatch):
    monkeypatch.setattr(integrity, "HASH_LIMIT_BYTES", 0)  # As if every file were huge.
    state = {"w": jnp.arange(4096.0), "step": jnp.array(1)}
    checkpoints = TrainCheckpointer(tmp_path, keep=2)
    checkpoints.save(1, state, Position(1))
    checkpoints.wait()
    faults.garble(faults.largest_data_file(tmp_path / "1" / "state"))
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)
    with pytest.raises(CheckpointDamaged, match="checksum mismatch") as error:
        checkpoints.restore(1, abstract, Position())
    checkpoints.close()
    assert error.value.step == 1 and "['w']" in error.value.problem
