"""Orbax checkpoints of a training run: the train state plus the input pipeline's position.

`workdir/checkpoints/<step>/` holds `state/` (parameters, optimizer state, step, RNG, written
by every process for its own shards) and `data/` (the iterator's `save(path)` of every
process; the iterator tells its processes' files apart). Saves are asynchronous: the arrays
are copied off the devices before `save` returns and are written in a background thread
while training goes on. Each checkpoint is written to a temporary directory and renamed when
complete, so a save killed half-way leaves the previous checkpoint intact; the next run
removes the leftovers.

Integrity (see `integrity`): each checkpoint also holds `integrity/` (a checksum of every
array) and a `.files.json` in `state/` and `data/` (size and CRC-32 of every file). `restore`
checks them and raises `CheckpointDamaged` naming the step, the file and the problem, or
`CheckpointMismatch` when the checkpoint is intact but the config builds another model.
`poll_save()` turns a failed asynchronous save into `WorkdirError` at the next step.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import os
import shutil
import time
from typing import Any, Protocol

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from jax.experimental import multihost_utils

from vit_jax.checkpoint import fs, integrity
from vit_jax.checkpoint.errors import CheckpointError
from vit_jax.errors import VitJaxError, WorkdirError

ITERATOR_PREFIX = "iterator"
CHECKPOINT_DIR = "checkpoints"  # Orbax checkpoints live in workdir/checkpoints/<step>/.
TMP_MARKER = ".orbax-checkpoint-tmp"  # Orbax's suffix for a checkpoint still being written.
UNFINISHED_SWEEP_QUIET_S = 0.5  # A failed save's directory is gone once none appears this long,
UNFINISHED_SWEEP_MAX_S = 10.0  # or this long after the failure at the most.
SPACE_MARGIN_BYTES = 64 << 10  # Beyond one checkpoint's size: Orbax's metadata and locks.


class CheckpointDamaged(Exception):
    """A checkpoint that cannot be restored as written: `step`, `path` (the file) and `problem`."""

    def __init__(self, step: int, path: str, problem: str):
        super().__init__(f"Checkpoint step {step} is damaged: {path}: {problem}")
        self.step, self.path, self.problem = step, path, problem


class CheckpointMismatch(Exception):
    """An intact checkpoint whose arrays do not fit the current config's train state."""


def _write_manifest_on_primary(directory: epath.Path) -> None:
    """File checksums for a finished item directory; only local paths (see README)."""
    if jax.process_index() == 0 and fs.is_local(os.fspath(directory)):
        integrity.write_file_manifest(directory)


class _StateHandler(ocp.StandardCheckpointHandler):
    """Orbax's handler, plus the file manifest once every process's files are in place."""

    def finalize(self, directory: epath.Path) -> None:
        super().finalize(directory)
        _write_manifest_on_primary(directory)


# Orbax finds an item's handler by its args class, so the subclassed handler gets its own.
@ocp.args.register_with_handler(_StateHandler, for_save=True)
class StateSave(ocp.args.StandardSave):
    pass


@ocp.args.register_with_handler(_StateHandler, for_restore=True)
class StateRestore(ocp.args.StandardRestore):
    pass


class ResumableIterator(Protocol):
    """An input pipeline that can write and read back its exact position.

    Every process calls `save(path)` and `restore(path)` with the same `path` (on storage all
    processes share, as Orbax needs anyway); the iterator decides which process writes what.
    `restore` raises a `VitJaxError` when the position does not apply to this run: that is a
    user's change of settings, reported as such, never taken for a damaged checkpoint.
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

    def finalize(self, directory: epath.Path) -> None:
        _write_manifest_on_primary(directory)  # Whatever files the iterator wrote.


@ocp.args.register_with_handler(DataIteratorHandler, for_save=True)
@dataclasses.dataclass
class DataIteratorSave(ocp.args.CheckpointArgs):
    iterator: ResumableIterator


@ocp.args.register_with_handler(DataIteratorHandler, for_restore=True)
@dataclasses.dataclass
class DataIteratorRestore(ocp.args.CheckpointArgs):
    iterator: ResumableIterator


class TrainCheckpointer:
    """Keeps the last `keep` checkpoints of a run in `directory`, with checksums."""

    def __init__(self, directory: str | os.PathLike, *, keep: int, asynchronous: bool = True):
        self._pending: int | None = None  # The step of a save that may still be running.
        self._bytes_per_checkpoint = 0
        self._manager = ocp.CheckpointManager(
            epath.Path(directory),
            options=ocp.CheckpointManagerOptions(
                max_to_keep=keep,
                enable_async_checkpointing=asynchronous,
                cleanup_tmp_directories=True,
                create=True,
            ),
            item_handlers={
                "state": _StateHandler(),
                "data": DataIteratorHandler(),
                "integrity": ocp.JsonCheckpointHandler(),
            },
        )

    @property
    def directory(self) -> epath.Path:
        return self._manager.directory

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def reload(self) -> None:
        """Re-reads the list of checkpoints (after one was moved away)."""
        self._manager.reload()

    def save(self, step: int, state: Any, iterator: ResumableIterator) -> None:
        """Starts saving; call `wait()` (or `poll_save()` every step) before relying on it.

        Raises WorkdirError at once when the disk has less free space than the last
        checkpoint took (a full disk is the usual failure, and this way nothing is written).
        """
        self._bytes_per_checkpoint = self._checkpoint_bytes(state)
        free = _free_bytes(os.fspath(self.directory))
        full = free is not None and free < self._bytes_per_checkpoint + SPACE_MARGIN_BYTES
        if jax.process_count() > 1:  # Process 0 decides for all: none may enter the save alone.
            full = bool(multihost_utils.broadcast_one_to_all(np.asarray(full)))
        if full:
            raise self._save_error(step, None, before=True)
        checksums = integrity.array_checksums(state)  # Before the next step donates `state`.
        try:
            self._manager.save(
                step,
                args=ocp.args.Composite(
                    state=StateSave(state),
                    data=DataIteratorSave(iterator),
                    integrity=ocp.args.JsonSave({"arrays": checksums}),
                ),
                force=True,
            )
        except Exception as e:  # A failed earlier save surfaces here, or this one fails.
            raise self._save_error(self._pending or step, e) from e
        self._pending = step

    def poll_save(self) -> None:
        """Raises WorkdirError if the last asynchronous save failed; never waits for one."""
        if self._pending is None or self._manager.is_saving_in_progress():
            return
        self.wait()

    def wait(self) -> None:
        """Waits for the last save; WorkdirError if it failed."""
        try:
            self._manager.wait_until_finished()
            self._manager.check_for_errors()
        except Exception as e:
            raise self._save_error(self._pending, e) from e
        if self._pending is not None and not (self.directory / str(self._pending)).exists():
            raise self._save_error(self._pending, None)  # Orbax logged it and moved on.
        self._pending = None

    def _checkpoint_bytes(self, state: Any) -> int:
        """The size of the newest finished checkpoint on disk (one may still be in flight),
        else of the arrays in memory, whichever is larger."""
        in_memory = sum(x.nbytes for x in jax.tree.leaves(state))
        if not fs.is_local(os.fspath(self.directory)):
            return in_memory
        for step in reversed(self.all_steps()):
            path = os.fspath(self.directory / str(step))
            sizes = [
                os.path.getsize(os.path.join(root, name))
                for root, _, names in os.walk(path)
                for name in names
            ]
            if sizes:
                return max(sum(sizes), in_memory)
        return in_memory

    def _save_error(
        self, step: int | None, error: Exception | None, before: bool = False
    ) -> WorkdirError:
        """The message for a save that failed: where, the free space, the space needed."""
        self._pending = None
        self._remove_unfinished()
        directory = os.fspath(self.directory)
        free = _free_bytes(directory)
        cause = f" ({_gist(error)})" if error is not None else ""
        kept = self.all_steps()
        what = "Not enough space to save" if before else "Saving"
        return WorkdirError(
            f"{what} checkpoint step {step} in {directory}{'' if before else ' failed'}"
            f"{cause}. Free space there: {_size(free)}; one checkpoint needs about "
            f"{_size(self._bytes_per_checkpoint)}. "
            f"Training stopped; the earlier checkpoints ({_steps(kept)}) are intact. Free some "
            "space (or lower config.keep_checkpoints) and run the same command to resume."
        )

    def _remove_unfinished(self) -> None:
        """Deletes the temporary directory of a failed save: never a complete checkpoint."""
        if jax.process_index() != 0 or not fs.is_local(os.fspath(self.directory)):
            return
        # Orbax's other writer threads may still be writing into it: let them end first.
        with contextlib.suppress(Exception):  # Their failure is the one being reported.
            self._manager.wait_until_finished()
        # TensorStore's own writes of the failed save can outlive that wait and recreate the
        # directory (seen under load): sweep until none has appeared for a while.
        pattern = os.path.join(os.fspath(self.directory), f"*{TMP_MARKER}*")
        quiet_since = time.monotonic()
        deadline = quiet_since + UNFINISHED_SWEEP_MAX_S
        while time.monotonic() < deadline:
            leftovers = glob.glob(pattern)
            for path in leftovers:
                shutil.rmtree(path, ignore_errors=True)
            if leftovers:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= UNFINISHED_SWEEP_QUIET_S:
                return
            time.sleep(0.05)

    def restore(self, step: int, abstract_state: Any, iterator: ResumableIterator) -> Any:
        """The state at `step`, laid out as `abstract_state` (ShapeDtypeStructs with shardings).

        Also moves `iterator` to the position it had when the checkpoint was saved. Raises
        `CheckpointDamaged` (a missing, truncated or altered file or array) or
        `CheckpointMismatch` (an intact checkpoint of another model or optimizer).
        """
        step_dir = self.directory / str(step)
        verified = self._verify_files(step, step_dir)
        items = {
            "state": StateRestore(abstract_state),
            "data": DataIteratorRestore(iterator),
        }
        if verified:
            items["integrity"] = ocp.args.JsonRestore()
        try:
            restored = self._manager.restore(step, args=ocp.args.Composite(**items))
        except Exception as e:
            refusal = _user_error(e)
            if refusal is not None:  # E.g. the iterator refusing changed data settings.
                raise refusal from None
            self._check_fits(step, step_dir, abstract_state)  # Another config, not damage?
            raise CheckpointDamaged(step, _named_file(e, step_dir), _first_line(e)) from e
        if verified:
            stored = restored["integrity"]["arrays"]
            bad = integrity.compare_checksums(stored, integrity.array_checksums(restored["state"]))
            if bad:
                self._check_fits(step, step_dir, abstract_state)  # E.g. a dtype cast on restore.
                raise CheckpointDamaged(
                    step,
                    os.fspath(step_dir / "state"),
                    f"the arrays {', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''} read back "
                    "differently from what was saved (checksum mismatch): the array files were "
                    "altered after the save",
                )
        return restored["state"]

    def _verify_files(self, step: int, step_dir: epath.Path) -> bool:
        """Checks the file manifests; whether the checkpoint has checksums to compare."""
        if not fs.is_local(os.fspath(step_dir)):  # Remote: the array checksums alone.
            return (step_dir / "integrity").exists()
        verified = True
        for item in ("state", "data"):
            try:
                verified &= integrity.verify_file_manifest(step_dir / item)
            except integrity.Damage as e:
                raise CheckpointDamaged(step, e.path, e.problem) from e
        return verified and (step_dir / "integrity").exists()

    def _check_fits(self, step: int, step_dir: epath.Path, abstract_state: Any) -> None:
        """CheckpointMismatch if the saved arrays' shapes or dtypes differ from the config's.

        Only called once a restore failed (reading the metadata costs about 0.3 s for
        ViT-B/16), to tell another config from damage.
        """
        try:
            metadata = ocp.StandardCheckpointHandler().metadata(step_dir / "state")
        except Exception as e:
            raise CheckpointDamaged(step, _named_file(e, step_dir), _first_line(e)) from e
        tree = getattr(metadata, "item_metadata", metadata)
        saved = _shapes(getattr(tree, "tree", tree))
        wanted = _shapes(abstract_state)
        differ = [k for k in sorted(saved.keys() & wanted.keys()) if saved[k] != wanted[k]]
        if len(saved) != len(wanted):
            differ.append(f"{len(saved)} arrays saved, {len(wanted)} in the current train state")
        if differ:
            shown = "; ".join(
                f"{k}: saved {saved[k]}, now {wanted[k]}" if k in saved else k for k in differ[:3]
            )
            raise CheckpointMismatch(f"checkpoint step {step} holds other arrays ({shown})")

    def close(self) -> None:
        try:
            self._manager.close()
        except Exception:  # A failed save was already reported (or is being reported).
            pass


def _shapes(tree: Any) -> dict[str, str]:
    """`{"params/Transformer/...": "float32[16, 32]"}`, alike for a TrainState and its metadata."""

    def name(key: Any) -> str:
        for attribute in ("key", "name", "idx"):
            if hasattr(key, attribute):
                return str(getattr(key, attribute))
        return str(key)

    return {
        "/".join(name(k) for k in path): f"{np.dtype(leaf.dtype)}{list(leaf.shape)}"
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
        if hasattr(leaf, "shape")
    }


def _named_file(error: BaseException, step_dir: epath.Path) -> str:
    """The first path inside `step_dir` that an Orbax/TensorStore message mentions."""
    root = os.fspath(step_dir)
    text = str(error)
    at = text.find(root)
    if at < 0:
        return root
    end = at + len(root)
    while end < len(text) and text[end] not in "\"' \n:,)]":
        end += 1
    return text[at:end]


def _first_line(error: BaseException | None) -> str:
    line = next((ln.strip() for ln in str(error).splitlines() if ln.strip()), "")
    line = line if len(line) <= 300 else line[:300] + " ..."
    return f"{type(error).__name__}: {line}".rstrip(". ")


def _free_bytes(directory: str) -> int | None:
    """Free bytes on the local file system holding `directory`; None for remote paths."""
    if not fs.is_local(directory):
        return None
    path = directory
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def _size(n: int | None) -> str:
    if n is None:
        return "unknown"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n} bytes"


def _gist(error: BaseException, limit: int = 400) -> str:
    """One line of `error`; long TensorStore messages keep their start and their end, where
    the OS error (e.g. "No space left on device") is."""
    text = " ".join(str(error).split())
    if len(text) > limit:
        text = f"{text[: limit // 2]} ... {text[-limit // 2 :]}"
    return f"{type(error).__name__}: {text}".rstrip(". ")


def _steps(steps: list[int]) -> str:
    return f"steps {', '.join(map(str, steps))}" if steps else "none"


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
    try:
        if fs.is_local(os.fspath(state_dir)):
            integrity.verify_file_manifest(state_dir)
    except integrity.Damage as e:
        raise CheckpointError(
            f"Checkpoint step {step} of {workdir} is damaged: {e.path}: {e.problem}. Pass "
            f"another step (it has {steps}), or run the trainer in that workdir, which sets "
            "damaged checkpoints aside and resumes from an intact one."
        ) from e
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


def _user_error(error: BaseException) -> VitJaxError | None:
    """The VitJaxError behind `error` (Orbax may wrap what a handler raised), if any."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, VitJaxError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None
