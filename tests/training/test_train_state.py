"""Orbax train-state checkpoints: round trip onto shardings, keeping the last few, and a save
killed half-way leaving the previous checkpoint usable."""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np

from tests.training.conftest import REPO_ROOT, child_env
from vit_jax import sharding
from vit_jax.training.train_state import TrainCheckpointer


class Position:
    """A stand-in data iterator whose position is one integer."""

    def __init__(self, position=0):
        self.position = position

    def save(self, path):
        with open(f"{path}-process{jax.process_index()}.txt", "w") as f:
            f.write(str(self.position))

    def restore(self, path):
        with open(f"{path}-process{jax.process_index()}.txt") as f:
            self.position = int(f.read())


def test_round_trip_onto_shardings_and_keep(tmp_path):
    mesh = sharding.make_mesh({"data": 2, "fsdp": 4})
    state = {"w": jnp.arange(32.0).reshape(4, 8), "step": jnp.array(3)}
    shardings = {"w": sharding.fsdp_shardings(state["w"], mesh), "step": sharding.replicated(mesh)}
    checkpoints = TrainCheckpointer(tmp_path, keep=2)
    for step in range(1, 5):
        checkpoints.save(step, jax.tree.map(lambda x, s=step: x * s, state), Position(step * 10))
    checkpoints.wait()
    assert checkpoints.all_steps() == [3, 4] and checkpoints.latest_step() == 4

    abstract = jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, shardings
    )
    position = Position()
    restored = checkpoints.restore(3, abstract, position)
    checkpoints.close()
    assert position.position == 30
    np.testing.assert_array_equal(restored["w"], 3 * state["w"])
    assert restored["w"].sharding.spec == jax.sharding.PartitionSpec(None, "fsdp")


KILLED_MID_SAVE = """
import os, sys
import jax.numpy as jnp
from vit_jax.training.train_state import TrainCheckpointer
from tests.training.test_train_state import Position

class Dies(Position):
    def save(self, path):
        os._exit(3)  # Killed while checkpoint 2 is being written.

checkpoints = TrainCheckpointer(sys.argv[1], keep=3)
checkpoints.save(1, {"w": jnp.ones(4)}, Position(1))
checkpoints.wait()
checkpoints.save(2, {"w": jnp.full(4, 2.0)}, Dies(2))
"""


def test_a_save_killed_half_way_keeps_the_previous_checkpoint(tmp_path):
    child = subprocess.run(
        [sys.executable, "-c", KILLED_MID_SAVE, str(tmp_path)],
        cwd=REPO_ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 3, child.stderr[-2000:]
    assert any("tmp" in name for name in os.listdir(tmp_path))  # The unfinished step 2.

    checkpoints = TrainCheckpointer(tmp_path, keep=3)
    assert checkpoints.all_steps() == [1]
    position = Position()
    abstract = {"w": jax.ShapeDtypeStruct((4,), jnp.float32)}
    np.testing.assert_array_equal(checkpoints.restore(1, abstract, position)["w"], 1.0)
    assert position.position == 1
    checkpoints.close()
