"""A full disk stops the run at the next step with one paragraph, keeping every earlier
checkpoint, and the run resumes exactly once there is space; a second trainer on a workdir is
refused naming the holder, and a killed holder's lock is taken over."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import sys

import pytest

from tests.training import synthetic
from tests.training.conftest import REPO_ROOT, child_env
from tests.training.reliability import faults
from vit_jax.training import train_state
from vit_jax.training.workdir_lock import WorkdirLock

SLACK_BYTES = 40 << 10  # Room left on the disk: metrics lines fit, a checkpoint (~120 KiB) not.


class FullDiskData(synthetic.SyntheticData):
    """Synthetic data whose iterator files fail with ENOSPC from `full_at` on."""

    def __init__(self, full_at: int):
        super().__init__()
        self.full_at = full_at

    def make_train_iterator(self, config, mesh, data_axes, dataset=None):
        iterator = super().make_train_iterator(config, mesh, data_axes, dataset)
        full_at, save = self.full_at, iterator.save

        def failing_save(path):
            if iterator.position >= full_at:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
            save(path)

        iterator.save = failing_save
        return iterator


@contextlib.contextmanager
def small_disk(directory: str, size: str = "8m"):
    """A real tmpfs mounted at `directory` (needs root); skips the test where not allowed."""
    os.makedirs(directory)
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; the simulated ENOSPC case still runs")
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", directory], capture_output=True
    )
    if mount.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({mount.stderr.decode().strip()})")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", directory], check=False)


def fill(directory: str, leave: int) -> str:
    """Writes a ballast file so that only `leave` bytes stay free; returns its path."""
    stats = os.statvfs(directory)
    ballast = os.path.join(directory, "ballast")
    with open(ballast, "wb") as f:
        f.write(b"\0" * max(stats.f_bavail * stats.f_frsize - leave, 0))
    return ballast


# Orbax's background threads may leave a closed event loop behind after a failed write.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("disk", ["tmpfs", "tmpfs_async", "simulated_enospc"])
def test_full_disk_stops_at_once_keeps_checkpoints_and_resumes_exactly(
    disk, reference, run_at, tmp_path, monkeypatch, capsys
):
    """tmpfs: the space check before the save refuses it; tmpfs_async (that check off) and
    simulated_enospc: the asynchronous write itself fails."""
    with contextlib.ExitStack() as stack:
        if disk == "tmpfs_async":
            monkeypatch.setattr(train_state, "SPACE_MARGIN_BYTES", -(1 << 50))
        if disk.startswith("tmpfs"):
            mount = stack.enter_context(small_disk(str(tmp_path / "disk")))
            workdir = run_at(4, os.path.join(mount, "run"))
            ballast = fill(mount, leave=SLACK_BYTES)
            data = None
        else:
            workdir = run_at(4)
            data = FullDiskData(full_at=6)
        checkpoints_dir = os.path.join(workdir, train_state.CHECKPOINT_DIR)
        kept = {s: faults.all_files(faults.step_dir(workdir, s)) for s in (2, 4)}

        code, out, err = faults.run_cli(monkeypatch, capsys, workdir, data=data)

        assert code == 2
        assert f"checkpoint step 6 in {checkpoints_dir}" in err
        assert "Free space there: " in err and "one checkpoint needs about " in err
        assert "Traceback" not in out + err and len(err.strip().splitlines()) == 1
        assert "Done" not in out  # Stopped before the end ...
        if disk == "tmpfs":  # ... and, with the check before the save, at step 6 itself.
            assert "Not enough space to save" in err and max(faults.losses(workdir)) == 6
        else:  # The write failed: the OS error is quoted.
            assert "No space left on device" in err
        assert sorted(os.listdir(checkpoints_dir)) == ["2", "4"]  # No temporary leftovers.
        for step, files in kept.items():
            assert faults.all_files(faults.step_dir(workdir, step)) == files

        if disk.startswith("tmpfs"):
            os.remove(ballast)
        monkeypatch.undo()  # Space again.
        code, out, err = faults.run_cli(monkeypatch, capsys, workdir)
        assert code == 0, err
        assert "Resuming from step 4" in out
        assert faults.losses(workdir) == faults.losses(reference)
        faults.assert_same_final_params(workdir, reference)


def test_second_trainer_is_refused_naming_the_holder(tmp_path, monkeypatch, capsys):
    workdir = str(tmp_path / "run")
    os.makedirs(workdir)
    (tmp_path / "run" / "metrics.jsonl").write_text("the holder's line\n")
    with WorkdirLock(workdir):
        code, out, err = faults.run_cli(monkeypatch, capsys, workdir)
    assert code == 2
    assert f"{workdir} is in use by another trainer (host {socket.gethostname()}, " in err
    assert f"pid {os.getpid()}, started " in err
    assert "Traceback" not in out + err and not out
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == "the holder's line\n"
    assert not os.path.exists(os.path.join(workdir, train_state.CHECKPOINT_DIR))


HOLD_THEN_WAIT = """
import sys, time
from vit_jax.training.workdir_lock import WorkdirLock
WorkdirLock(sys.argv[1]).acquire()
print("held", flush=True)
time.sleep(120)
"""


def test_lock_of_a_killed_trainer_is_taken_over(tmp_path, monkeypatch, capsys):
    workdir = str(tmp_path / "run")
    os.makedirs(workdir)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_THEN_WAIT, workdir],
        cwd=REPO_ROOT,
        env=child_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        holder.send_signal(signal.SIGKILL)  # No chance to release anything.
        holder.wait(timeout=60)
    finally:
        holder.kill()
    code, out, err = faults.run_cli(monkeypatch, capsys, workdir, "--config.total_steps=2")
    assert code == 0, err
    assert f"Took over {os.path.join(workdir, 'LOCK')} from a run that is gone" in out
    assert f"pid {holder.pid}" in out
