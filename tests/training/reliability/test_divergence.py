"""Divergence: the first step whose loss or gradient norm is non-finite or exploded is named,
and only checkpoints whose state was trained before it are called good (the others are set
aside, not deleted)."""

from __future__ import annotations

import math
import os
import re

import numpy as np

from tests.training.reliability import faults
from vit_jax.training import divergence, metrics, resume, train_state


def test_monitor_names_the_first_exploded_or_non_finite_step():
    monitor = divergence.DivergenceMonitor()
    normal = [2.3, 2.1, 1.9, 2.0]
    assert all(monitor.check(s, {"train_loss": v}) is None for s, v in enumerate(normal, 1))
    spike = 10 * max(normal)  # A spike, not an explosion.
    assert monitor.check(5, {"train_loss": spike}) is None
    exploded = monitor.check(6, {"train_loss": 2 * divergence.EXPLODED * max(normal)})
    assert exploded.startswith("at step 6: train_loss") and "x the median" in exploded
    assert "grad_norm is nan" in monitor.check(7, {"train_loss": 1.0, "grad_norm": math.nan})
    # Step s measures the state saved at s - 1: good checkpoints predate it.
    assert divergence.last_good_step(6, [2, 4, 5, 6]) == 4
    assert divergence.last_good_step(2, [1, 2]) is None


def test_huge_learning_rate_keeps_only_checkpoints_from_before_the_blow_up(
    tmp_path, monkeypatch, capsys
):
    workdir = str(tmp_path / "run")
    args = ["--config.base_lr=1e6", "--config.checkpoint_every=1", "--config.keep_checkpoints=9"]

    code, out, err = faults.run_cli(monkeypatch, capsys, workdir, *args)

    assert code == 1 and "Traceback" not in out + err
    first_bad = int(re.search(r"Training diverged at step (\d+):", err).group(1))
    records = [r for r in metrics.read_metrics(workdir) if "train_loss" in r]
    assert [r["step"] for r in records] == list(range(1, first_bad))  # Every earlier step ...
    monitor = divergence.DivergenceMonitor()  # ... passes the same test.
    assert all(monitor.check(r["step"], r) is None for r in records)

    kept = sorted(int(s) for s in os.listdir(os.path.join(workdir, train_state.CHECKPOINT_DIR)))
    aside = os.path.join(workdir, train_state.CHECKPOINT_DIR + resume.DAMAGED_SUFFIX)
    moved = sorted(int(s) for s in os.listdir(aside)) if os.path.isdir(aside) else []
    assert kept == [s for s in range(1, first_bad) if s < first_bad - 1]
    assert moved == [s for s in range(1, first_bad) if s >= first_bad - 1]
    if kept:
        assert f"last good checkpoint (step {kept[-1]})" in err
        params = train_state.load_params(workdir)
        assert all(np.isfinite(x).all() for x in _leaves(params))
    else:
        assert "No checkpoint was saved before it" in err


def _leaves(tree):
    return [leaf for value in tree.values() for leaf in _leaves_of(value)]


def _leaves_of(value):
    return _leaves(value) if isinstance(value, dict) else [value]
