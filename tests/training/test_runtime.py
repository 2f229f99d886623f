"""Multi-process launch detection and the SIGTERM watcher."""

from __future__ import annotations

import os
import signal

import pytest

from vit_jax.training import runtime


@pytest.mark.parametrize(
    "env, detected",
    [
        ({}, False),
        ({"SLURM_NTASKS": "1"}, False),
        ({"SLURM_NTASKS": "4"}, True),
        ({"OMPI_COMM_WORLD_SIZE": "2"}, True),
        ({"TPU_WORKER_HOSTNAMES": "host0"}, False),
        ({"TPU_WORKER_HOSTNAMES": "host0,host1"}, True),
        ({"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234"}, True),
    ],
)
def test_detected_cluster(monkeypatch, env, detected):
    for var in (*runtime.MULTI_PROCESS_ENV, runtime.TPU_HOSTS_ENV, runtime.COORDINATOR_ENV):
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    assert (runtime.detected_cluster() is not None) == detected


def test_sigterm_sets_the_flag_and_close_restores_the_handler():
    before = signal.getsignal(signal.SIGTERM)
    preemption = runtime.Preemption()
    try:
        assert not preemption.reached(1)
        os.kill(os.getpid(), signal.SIGTERM)
        assert preemption.reached(2)
    finally:
        preemption.close()
    assert signal.getsignal(signal.SIGTERM) == before
