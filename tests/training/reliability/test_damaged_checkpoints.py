"""Damaged checkpoints: every fault is named (step, file, what is wrong), the checkpoint is
moved aside intact, and the run resumes from the newest intact one and ends exactly like an
uninterrupted run. Unusable workdirs stop with one paragraph, the traceback in train.log."""

from __future__ import annotations

import os

import pytest

from tests.training.reliability import faults
from vit_jax.checkpoint import CheckpointError, integrity
from vit_jax.training import resume, run_log, train_state


def _data_file(step_dir: str) -> str:
    """Whatever file the data iterator wrote (its names are the iterator's business)."""
    data_dir = os.path.join(step_dir, "data")
    names = [n for n in os.listdir(data_dir) if n != integrity.MANIFEST and "commit" not in n]
    return os.path.join(data_dir, sorted(names)[0])


FAULTS = {
    "garbled_array_file": (faults.largest_array_file, faults.garble, "contents changed"),
    "truncated_array_file": (faults.largest_array_file, faults.truncate, "bytes where"),
    "deleted_manifest_ocdbt": (
        lambda w, s: os.path.join(faults.step_dir(w, s), "state", "manifest.ocdbt"),
        os.remove,
        "missing",
    ),
    "deleted_state_metadata": (
        lambda w, s: os.path.join(faults.step_dir(w, s), "state", "_METADATA"),
        os.remove,
        "missing",
    ),
    "garbled_data_position": (
        lambda w, s: _data_file(faults.step_dir(w, s)),
        lambda p: faults.garble(p, count=2),
        "contents changed",
    ),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_damaged_newest_checkpoint_is_set_aside_and_the_run_replays_exactly(
    fault, reference, stopped, tmp_path, monkeypatch, capsys
):
    workdir = faults.copy_workdir(stopped, tmp_path / "run")
    pick, damage, problem = FAULTS[fault]
    path = pick(workdir, 6)
    damage(path)
    damaged_files = faults.all_files(faults.step_dir(workdir, 6))

    code, out, err = faults.run_cli(monkeypatch, capsys, workdir)

    assert code == 0, err
    assert f"Checkpoint step 6 is damaged: {path}: " in out and problem in out
    assert "Resuming from step 4" in out
    assert "Traceback" not in out + err
    moved = os.path.join(workdir, train_state.CHECKPOINT_DIR + resume.DAMAGED_SUFFIX, "6")
    assert faults.all_files(moved) == damaged_files  # Set aside byte for byte, not deleted.
    assert faults.losses(workdir) == faults.losses(reference)  # Steps 5-8 replayed exactly.
    faults.assert_same_final_params(workdir, reference)


def test_no_intact_checkpoint_stops_with_one_paragraph_and_keeps_them_all(
    stopped, tmp_path, monkeypatch, capsys
):
    workdir = faults.copy_workdir(stopped, tmp_path / "run")
    before = {}
    for step in (2, 4, 6):
        faults.truncate(faults.largest_array_file(workdir, step))
        before[step] = faults.all_files(faults.step_dir(workdir, step))

    code, _, err = faults.run_cli(monkeypatch, capsys, workdir)

    assert code == 2
    assert "No intact checkpoint in" in err and "step 2 (" in err and "step 6 (" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    aside = os.path.join(workdir, train_state.CHECKPOINT_DIR + resume.DAMAGED_SUFFIX)
    for step, files in before.items():
        assert faults.all_files(os.path.join(aside, str(step))) == files


# Orbax's background threads may leave a closed event loop behind after the failed restore.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("verbose", [False, True])
def test_checkpoint_of_another_model_names_the_change_and_logs_details(
    verbose, stopped, tmp_path, monkeypatch, capsys
):
    workdir = faults.copy_workdir(stopped, tmp_path / "run")
    flags = ["--config.model.hidden_size=32", *(["--verbose"] if verbose else [])]

    code, _, err = faults.run_cli(monkeypatch, capsys, workdir, *flags)

    assert code == 2
    paragraph = err.strip().splitlines()[-1]
    assert "Cannot resume in" in paragraph and "checkpoint step 6 holds other arrays" in paragraph
    assert "model.hidden_size: 16 -> 32" in paragraph and "Use the original config" in paragraph
    assert ("Traceback" in err) == verbose  # Details on the console only when asked for.
    with open(os.path.join(workdir, run_log.LOG_FILE)) as f:
        assert "Traceback" in f.read()
    assert sorted(os.listdir(os.path.join(workdir, train_state.CHECKPOINT_DIR))) == ["2", "4", "6"]


def test_reading_a_damaged_checkpoint_for_conversion_names_the_file(stopped, tmp_path):
    workdir = faults.copy_workdir(stopped, tmp_path / "run")
    path = faults.largest_array_file(workdir, 6)
    faults.truncate(path)
    with pytest.raises(CheckpointError, match=f"step 6 of .* is damaged: {path}: the file has"):
        train_state.load_params(workdir)
    assert train_state.load_params(workdir, step=4)  # The others still read.
