"""Shared runs for the fault tests: one uninterrupted reference run and the same run
preempted after step 6, each computed once per session and copied by the tests that damage it."""

from __future__ import annotations

import os

import pytest

from tests.training import synthetic
from tests.training.conftest import REPO_ROOT
from tests.training.reliability import faults
from vit_jax import train
from vit_jax.training import loop, runtime, train_state


@pytest.fixture(autouse=True)
def in_repo_root(monkeypatch):
    monkeypatch.chdir(REPO_ROOT)  # Config files are given relative to the repository.


def _run(workdir: str, stop_at: int | None = None) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(REPO_ROOT)
        patch.setattr(loop, "data", synthetic.SyntheticData())
        if stop_at is not None:  # As if SIGTERM arrived during step `stop_at`.
            patch.setattr(runtime.Preemption, "reached", lambda self, step: step == stop_at)
        assert train.main(["vit_jax.train", *faults.ARGS, f"--workdir={workdir}"]) == 0


@pytest.fixture(scope="session")
def reference(tmp_path_factory) -> str:
    """The workdir of an uninterrupted run (8 steps, checkpoints at 4, 6, 8)."""
    workdir = str(tmp_path_factory.mktemp("reference"))
    _run(workdir)
    return workdir


@pytest.fixture(scope="session")
def stopped(tmp_path_factory) -> str:
    """The same run preempted after step 6: checkpoints at steps 2, 4 and 6."""
    workdir = str(tmp_path_factory.mktemp("stopped"))
    _run(workdir, stop_at=6)
    steps = sorted(os.listdir(os.path.join(workdir, train_state.CHECKPOINT_DIR)))
    assert steps == ["2", "4", "6"]
    return workdir


@pytest.fixture
def run_at(tmp_path):
    """`run_at(stop_at)`: a fresh workdir with the run preempted after step `stop_at`."""

    def make(stop_at: int, workdir: str | None = None) -> str:
        workdir = workdir or str(tmp_path / "run")
        _run(workdir, stop_at=stop_at)
        return workdir

    return make
