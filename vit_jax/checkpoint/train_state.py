"""Orbax checkpoints of a training run: the train state plus the input pipeline's position.

`workdir/checkpoints/<step>/` holds `state/` (parameters, optimizer state, step, RNG, written
by every process for its own shards) and `data/` (the iterator's `save(path)` of every
process; the iterator tells its processes' files apart). Saves are asynchronous: the arrays
are copied off the devices before `save` returns and are written in a background thread
while training goes on. Each checkpoint is written to a temporary directory and renamed when
complete, so a save killed half-way leaves the previous checkpoint intact; the next run
removes the leftovers.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Protocol

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

ITERATOR_PREFIX = "iterator"
CHECKPOINT_DIR = "checkpoints"  # Orbax checkpoints live in workdir/checkpoints/<step>/.


class ResumableIterator(Protocol):
    """An input pipeline that can write and read back its exact position.

    Every process calls `save(path)` with the same `path`; each must write its own files
    (e.g. `<path>-process<i>.*`) and read them back in `restore(path)`.
    """

    def save(self, path: str) -> None: ...

    def restore(self, path: str) -> None: ...


class DataIteratorHandler(ocp.CheckpointHandler):
    """Saves the iterator position of every process under `<item dir>/iterator*`."""

    def save(self, directory: epath.Path, args: DataIteratorSave) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        args.iterator.save(os.fspath(directory / ITERATOR_PREFIX))

    def restore(self, directory: epath.Path, args: DataIteratorRestore) -> None:
        args.iterator.restore(os.fspath(directory / ITERATOR_PREFIX))


@ocp.args.register_with_handler(DataIteratorHandler, for_save=True)
@dataclasses.dataclass
class DataIteratorSave(ocp.args.CheckpointArgs):
    iterator: ResumableIterator


@ocp.args.register_with_handler(DataIteratorHandler, for_restore=True)
@dataclasses.dataclass
class DataIteratorRestore(ocp.args.CheckpointArgs):
    iterator: ResumableIterator


class TrainCheckpointer:
    """Keeps the last `keep` checkpoints of a run in `directory`."""

    def __init__(self, directory: str | os.PathLike, *, keep: int, asynchronous: bool = True):
        self._manager = ocp.CheckpointManager(
            epath.Path(directory),
            options=ocp.CheckpointManagerOptions(
                max_to_keep=keep,
                enable_async_checkpointing=asynchronous,
                cleanup_tmp_directories=True,
                create=True,
            ),
            item_handlers={
                "state": ocp.StandardCheckpointHandler(),
                "data": DataIteratorHandler(),
            },
        )

    @property
    def directory(self) -> epath.Path:
        return self._manager.directory

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def save(self, step: int, state: Any, iterator: ResumableIterator) -> None:
        """Starts saving; call `wait()` before relying on the files."""
        self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), data=DataIteratorSave(iterator)
            ),
            force=True,
        )

    def restore(self, step: int, abstract_state: Any, iterator: ResumableIterator) -> Any:
        """The state at `step`, laid out as `abstract_state` (ShapeDtypeStructs with shardings).

        Also moves `iterator` to the position it had when the checkpoint was saved.
        """
        restored = self._manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state),
                data=DataIteratorRestore(iterator),
            ),
        )
        return restored["state"]

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.close()


def load_params(workdir: str | os.PathLike, step: int | None = None) -> dict[str, Any]:
    """The parameters of a training run's checkpoint as numpy arrays, in the published layout.

    Reads only the parameters (not the optimizer state), from `workdir/checkpoints/<step>/`
    (the latest step by default), without the model or the config: for conversion and export.
    """
    from vit_jax.models import unstack_encoder_blocks

    root = epath.Path(os.path.abspath(os.fspath(workdir))) / CHECKPOINT_DIR
    steps = sorted(int(p.name) for p in root.iterdir() if p.name.isdigit()) if root.exists() else []
    if not steps:
        raise FileNotFoundError(
            f"{workdir} has no training checkpoints (expected {root}/<step>/state). Pass the "
            "workdir of a `python -m vit_jax.train` run, or a published-layout .npz."
        )
    if step is None:
        step = steps[-1]
    elif step not in steps:
        raise FileNotFoundError(f"{workdir} has no checkpoint at step {step}; it has {steps}.")
    state_dir = root / str(step) / "state"
    checkpointer = ocp.PyTreeCheckpointer()
    metadata = checkpointer.metadata(state_dir)
    tree = getattr(metadata, "item_metadata", metadata)
    tree = getattr(tree, "tree", tree)
    params_metadata = tree["params"]
    as_numpy = lambda _: ocp.RestoreArgs(restore_type=np.ndarray)
    restored = checkpointer.restore(
        state_dir,
        args=ocp.args.PyTreeRestore(
            item={"params": jax.tree.map(lambda _: np.zeros(()), params_metadata)},
            restore_args={"params": jax.tree.map(as_numpy, params_metadata)},
            partial_restore=True,
        ),
    )
    return unstack_encoder_blocks(restored["params"])
