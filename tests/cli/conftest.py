"""The README's main job, run once per session exactly as a new user runs it (the whole job, about
1.5 minutes on 2 cores): `python -m vit_jax.train` in a fresh directory (`workdirs/` inside it),
a fresh TFDS data dir (so the dataset is prepared, as on a first run), no TF_CPP_MIN_LOG_LEVEL,
one CPU device. Runs from elsewhere (the wheel) shrink it to a few steps with TINY."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
import subprocess
import sys

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
README = REPO_ROOT / "README.md"
# A handful of steps of the real architecture, for runs besides the main job itself.
TINY = [
    "--config.total_steps=4",
    "--config.warmup_steps=1",
    "--config.progress_every=2",
    "--config.eval_every=0",
    "--config.checkpoint_every=0",
    "--config.fewshot.seeds=1",
]


def readme_main_job() -> list[str]:
    """The arguments of the README's first `python -m vit_jax.train` command."""
    match = re.search(r"python -m (vit_jax\.train --config \S+ --workdir \S+)", README.read_text())
    assert match, "README.md has no `python -m vit_jax.train --config ... --workdir ...` command"
    return ["-m", *match.group(1).split()]


def user_env(tfds_dir: pathlib.Path, jax_cache: pathlib.Path) -> dict[str, str]:
    """This environment as a user's shell has it: none of conftest.py's test settings, but one
    persistent compilation cache, so the runs after the first compile little."""
    env = dict(os.environ)
    for name in ("TF_CPP_MIN_LOG_LEVEL", "XLA_FLAGS"):
        env.pop(name, None)
    env.update(
        JAX_PLATFORMS="cpu",
        TFDS_DATA_DIR=str(tfds_dir),
        JAX_COMPILATION_CACHE_DIR=str(jax_cache),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p),
    )
    return env


@dataclasses.dataclass(frozen=True)
class Run:
    stdout: str
    stderr: str

    @property
    def lines(self) -> list[str]:
        return [line for line in (self.stdout + self.stderr).splitlines() if line.strip()]


@dataclasses.dataclass(frozen=True)
class MainJob:
    cwd: pathlib.Path  # Like a fresh clone's root: workdirs/digits/ is in it afterwards.
    env: dict[str, str]
    first: Run

    def run(self, *args: str) -> Run:
        done = subprocess.run(
            [sys.executable, *args], cwd=self.cwd, env=self.env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return Run(done.stdout, done.stderr)


@pytest.fixture(scope="session")
def main_job(tmp_path_factory) -> MainJob:
    cwd = tmp_path_factory.mktemp("clone")
    env = user_env(tmp_path_factory.mktemp("tensorflow_datasets"), tmp_path_factory.mktemp("jax"))
    job = MainJob(cwd, env, Run("", ""))
    return dataclasses.replace(job, first=job.run(*readme_main_job()))
