"""Helpers for the fault-injection tests: the trainer's command line on the synthetic data,
and ways to damage a checkpoint as a disk, a careless copy or a user would."""

from __future__ import annotations

import os
import shutil

import numpy as np

from tests.training import synthetic
from vit_jax import train
from vit_jax.training import loop, metrics, train_state

# The tiny config on the synthetic data: 8 steps, a checkpoint every 2, the last 3 kept.
ARGS = [
    "--config=tests/training/tiny_config.py",
    "--config.batch_eval=16",
    "--config.model.dtype=float32",
    "--config.total_steps=8",
    "--config.checkpoint_every=2",
    "--config.keep_checkpoints=3",
]


def run_cli(monkeypatch, capsys, workdir, *extra: str, data=None) -> tuple[int, str, str]:
    """`python -m vit_jax.train` in this process on synthetic data: (exit code, out, err)."""
    monkeypatch.setattr(loop, "data", data or synthetic.SyntheticData())
    code = train.main(["vit_jax.train", *ARGS, f"--workdir={workdir}", *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def losses(workdir) -> dict[int, float]:
    """Every step's training loss in metrics.jsonl (a replayed step's last line wins)."""
    return {r["step"]: r["train_loss"] for r in metrics.read_metrics(workdir) if "train_loss" in r}


def all_files(directory) -> dict[str, bytes]:
    """`{relative path: contents}` of every file under `directory`."""
    found = {}
    for root, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, directory)] = f.read()
    return found


def step_dir(workdir, step: int) -> str:
    return os.path.join(workdir, train_state.CHECKPOINT_DIR, str(step))


def largest_array_file(workdir, step: int) -> str:
    """The biggest OCDBT data file of checkpoint `step` (where most parameters live)."""
    return largest_data_file(os.path.join(step_dir(workdir, step), "state"))


def largest_data_file(state_dir) -> str:
    """The biggest file in an OCDBT `d/` directory under `state_dir`."""
    files = [
        os.path.join(root, name)
        for root, _, names in os.walk(state_dir)
        if os.path.basename(root) == "d"
        for name in names
    ]
    return max(files, key=os.path.getsize)


def garble(path: str, count: int = 8) -> None:
    """Overwrites `count` bytes in the middle of `path` with different values."""
    with open(path, "r+b") as f:
        data = bytearray(f.read())
        middle = len(data) // 2
        data[middle : middle + count] = bytes(b ^ 0xA5 for b in data[middle : middle + count])
        f.seek(0)
        f.write(data)


def truncate(path: str) -> None:
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def copy_workdir(source, target) -> str:
    shutil.copytree(source, target)
    return str(target)


def assert_same_final_params(workdir, reference) -> None:
    got, want = train_state.load_params(workdir), train_state.load_params(reference)
    for a, b in zip(_leaves(got), _leaves(want)):
        np.testing.assert_array_equal(a, b)


def _leaves(tree):
    if isinstance(tree, dict):
        for key in sorted(tree):
            yield from _leaves(tree[key])
    else:
        yield tree
