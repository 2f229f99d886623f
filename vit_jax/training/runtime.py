"""Process-level concerns of a run: joining a multi-host job, and preemption notices."""

from __future__ import annotations

import os
import signal
import threading
import types

import jax
from absl import logging
from jax.experimental import multihost_utils

# Environment variables that mean "this process is one of several in a job" (launcher: meaning).
MULTI_PROCESS_ENV = {
    "SLURM_NTASKS": "SLURM (srun) with more than one task",
    "OMPI_COMM_WORLD_SIZE": "Open MPI (mpirun) with more than one rank",
    "JAX_NUM_PROCESSES": "an explicit JAX multi-process setup",
}
COORDINATOR_ENV = "JAX_COORDINATOR_ADDRESS"  # Read by jax.distributed.initialize itself.
TPU_HOSTS_ENV = "TPU_WORKER_HOSTNAMES"  # Comma-separated hosts of a Cloud TPU pod slice.


def detected_cluster() -> str | None:
    """What multi-process launcher this process runs under, or None for a single process."""
    for var, meaning in MULTI_PROCESS_ENV.items():
        if int(os.environ.get(var, "1") or 1) > 1:
            return meaning
    if "," in os.environ.get(TPU_HOSTS_ENV, ""):
        return "a multi-host Cloud TPU slice"
    if os.environ.get(COORDINATOR_ENV):
        return f"{COORDINATOR_ENV} set"
    return None


def initialize_distributed(
    *,
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    force: bool = False,
) -> None:
    """Joins a multi-process job with `jax.distributed.initialize`, when there is one.

    Explicit arguments win; otherwise the launcher is detected from the environment (SLURM,
    Open MPI, Cloud TPU pods, JAX_COORDINATOR_ADDRESS) and JAX fills in the details. `force`
    calls `initialize()` even when nothing is detected (e.g. GKE or GCE TPU pods).
    """
    if coordinator_address:
        jax.distributed.initialize(
            coordinator_address=coordinator_address,
            num_processes=num_processes,
            process_id=process_id,
        )
    elif force or detected_cluster():
        logging.info("Joining a multi-process job (%s).", detected_cluster() or "forced")
        jax.distributed.initialize()


class Preemption:
    """Tells the training loop when to save and stop because the job is being preempted.

    A single process watches SIGTERM itself. In a multi-process job, JAX's preemption
    service spreads the notice, and every process agrees on the step to save at.
    """

    def __init__(self) -> None:
        self._requested = False
        self._previous: signal.Handlers | int | None = None
        self._multi_process = jax.process_count() > 1
        if not self._multi_process and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._on_signal)

    def _on_signal(self, signum: int, frame: types.FrameType | None) -> None:
        del signum, frame
        self._requested = True

    def reached(self, step: int) -> bool:
        """Whether to save and stop after `step` (call after every step, on every process)."""
        if self._multi_process:
            return multihost_utils.reached_preemption_sync_point(step)
        return self._requested

    def close(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None


def print_primary(message: str) -> None:
    """Console messages come from process 0 only."""
    if jax.process_index() == 0:
        print(message, flush=True)
