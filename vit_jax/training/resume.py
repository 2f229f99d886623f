"""Resuming from the newest intact checkpoint, setting damaged ones aside (never deleting).

A damaged checkpoint (see `train_state.CheckpointDamaged`) is reported, moved to
`<checkpoints>.damaged/<step>` and the next older one is tried; the run then replays the
steps since that one exactly. When none is intact the run stops with WorkdirError rather than
silently starting afresh over a workdir that had checkpoints.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import jax
from jax.experimental import multihost_utils

from vit_jax.checkpoint import fs
from vit_jax.errors import WorkdirError
from vit_jax.training import run_log
from vit_jax.training.train_state import CheckpointDamaged, ResumableIterator, TrainCheckpointer

DAMAGED_SUFFIX = ".damaged"  # workdir/checkpoints.damaged/<step>/ holds what was set aside.


def set_aside(checkpoints: TrainCheckpointer, step: int) -> str:
    """Moves checkpoint `step` out of the way of Orbax; returns where it went."""
    source = os.fspath(checkpoints.directory / str(step))
    target_dir = os.fspath(checkpoints.directory).rstrip("/") + DAMAGED_SUFFIX
    target = os.path.join(target_dir, str(step))
    suffix = 1
    while os.path.exists(target):  # The same step damaged twice: keep both.
        target, suffix = os.path.join(target_dir, f"{step}-{suffix}"), suffix + 1
    if jax.process_index() == 0:
        if fs.is_local(source):
            os.makedirs(target_dir, exist_ok=True)
            os.replace(source, target)
        else:
            import tensorflow as tf

            tf.io.gfile.rename(source, target)
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(f"set_aside_{step}")
    return target


def restore_newest_intact(
    checkpoints: TrainCheckpointer,
    abstract_state: Any,
    iterator: ResumableIterator,
    report: Callable[[str], None],
) -> tuple[int, Any] | None:
    """`(step, state)` of the newest checkpoint that verifies, or None when there are none.

    Raises WorkdirError when checkpoints exist but every one is damaged;
    `train_state.CheckpointMismatch` (an intact checkpoint of another config) passes through.
    """
    damaged: list[str] = []
    for step in sorted(checkpoints.all_steps(), reverse=True):
        try:
            return step, checkpoints.restore(step, abstract_state, iterator)
        except CheckpointDamaged as e:
            run_log.log_details(e)  # Orbax's own error, if any, is its __cause__.
            where = set_aside(checkpoints, step)
            damaged.append(f"step {step} ({e.path}: {e.problem})")
            report(
                f"Checkpoint step {step} is damaged: {e.path}: {e.problem}. Moved it to "
                f"{where}; trying the next older checkpoint."
            )
            checkpoints.reload()
    if damaged:
        raise WorkdirError(
            f"No intact checkpoint in {checkpoints.directory}: {'; '.join(damaged)}. They were "
            f"moved to {os.fspath(checkpoints.directory).rstrip('/')}{DAMAGED_SUFFIX}/ (nothing "
            "was deleted). Restore the workdir from a backup, or run again to start afresh."
        )
    return None
