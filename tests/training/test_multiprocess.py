"""Two processes on localhost (4 CPU devices each, gloo collectives) train exactly like one
process with 8 devices: same losses, evaluation and final parameters."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from tests.training import synthetic
from tests.training.conftest import REPO_ROOT, child_env
from vit_jax import checkpoint
from vit_jax.training import loop
from vit_jax.training.train_state import CHECKPOINT_DIR

WORKER = os.path.join(REPO_ROOT, "tests", "training", "multiprocess_worker.py")
TIMEOUT = 240  # Seconds; a hung collective must not hang the suite.


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # CI runs it; `-m "not slow"` skips it in the inner loop.
def test_two_processes_match_one(tmp_path, monkeypatch):
    monkeypatch.setattr(loop, "data", synthetic.SyntheticData())
    single = loop.train_and_evaluate(synthetic.multiprocess_config(), str(tmp_path / "single"))

    port, out = free_port(), tmp_path / "multi.json"
    env = child_env(XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    workers = [
        subprocess.Popen(
            [sys.executable, WORKER, str(i), "2", str(port), str(tmp_path / "multi"), str(out)],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    logs = []
    try:
        for worker in workers:
            logs.append(worker.communicate(timeout=TIMEOUT)[0])
    except subprocess.TimeoutExpired:
        pytest.fail(f"The two processes did not finish within {TIMEOUT} s.")
    finally:
        for worker in workers:
            worker.kill()
    for worker, log in zip(workers, logs):
        assert worker.returncode == 0, log[-3000:]

    multi = json.loads(out.read_text())
    assert (multi["process_count"], multi["device_count"]) == (2, 8)
    losses = {int(step): loss for step, loss in multi["losses"].items()}
    assert sorted(losses) == sorted(single.train_losses)
    np.testing.assert_allclose(
        [losses[s] for s in sorted(losses)],
        [single.train_losses[s] for s in sorted(losses)],
        rtol=1e-5,
    )
    for key, value in single.eval_metrics.items():
        assert multi["eval"][key] == pytest.approx(value, rel=1e-5)
    multi_params = checkpoint.load(str(tmp_path / "multi" / "final.npz"))
    single_params = checkpoint.load(single.npz_path)
    assert jax.tree.structure(multi_params) == jax.tree.structure(single_params)
    for a, b in zip(jax.tree.leaves(multi_params), jax.tree.leaves(single_params)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert sorted(os.listdir(tmp_path / "multi" / CHECKPOINT_DIR)) == ["2", "4"]
