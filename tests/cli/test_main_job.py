"""The main job reaches the accuracy its config states; its console: our progress and summary
lines, at most 3 lines of library noise on a first run, and a finished job re-run says where
everything is."""

from __future__ import annotations

import re
import subprocess
import sys

from configs import digits
from tests.cli.conftest import readme_main_job
from vit_jax.training import metrics

MAX_NOISE_LINES = 3
# Lines the program prints itself (train.py, training/loop.py, run_summary.py, catalog.py).
OURS = re.compile(
    r"^(step +\d+/\d+ \||Preparing \S+ in |Saved the parameters|Done: |Already finished|"
    r"Resuming from step|  (parameters|checkpoints|metrics|To train further))"
)


# Below the stated figure, what a run may lose to another CPU's float rounding (measured: the
# 97.5% in every run here; 1.5 points is 5 of the 360 test digits).
ACCURACY_MARGIN = 0.015


def _test_accuracies(main_job) -> list[float]:
    workdir = main_job.cwd / readme_main_job()[-1]
    return [r["test_accuracy"] for r in metrics.read_metrics(workdir) if "test_accuracy" in r]


def test_main_job_reaches_the_accuracy_its_config_states(main_job):
    """configs/digits.py's docstring states the figure the README and the notebook quote."""
    stated = float(re.search(r"(\d+(?:\.\d+)?)% test accuracy", digits.__doc__).group(1)) / 100
    assert _test_accuracies(main_job)[-1] >= stated - ACCURACY_MARGIN, main_job.first.stdout


def test_first_run_prints_at_most_three_noise_lines(main_job):
    noise = [line for line in main_job.first.lines if not OURS.match(line)]
    assert len(noise) <= MAX_NOISE_LINES, "\n".join(noise)
    assert not main_job.first.stderr.strip(), main_job.first.stderr  # Libraries log to stderr.
    progress = [line for line in main_job.first.lines if " | ETA " in line]
    assert progress, main_job.first.stdout  # The progress line with its ETA stays.


def test_summary_names_metrics_and_outputs(main_job):
    out = main_job.first.stdout
    assert f"test_accuracy {_test_accuracies(main_job)[-1]:.4f}" in out
    assert "workdirs/digits/ViT-digits.npz" in out
    assert "workdirs/digits/checkpoints" in out
    assert "workdirs/digits/metrics.jsonl" in out


def test_rerun_of_finished_job_reports_final_metrics_and_paths(main_job):
    first_done = next(line for line in main_job.first.lines if line.startswith("Done: "))
    again = main_job.run(*readme_main_job())
    finished = next(line for line in again.lines if line.startswith("Already finished"))
    # The same step and metrics as the run that trained, read back from metrics.jsonl.
    assert finished.split(": ", 1)[1] == first_done.split(": ", 1)[1]
    assert "workdirs/digits/ViT-digits.npz" in again.stdout
    assert "workdirs/digits/checkpoints" in again.stdout
    assert "--config.total_steps" in again.stdout
    assert not again.stderr.strip(), again.stderr


def test_finetune_without_its_checkpoint_says_to_run_the_main_job(main_job, tmp_path):
    """`configs/digits_finetune.py` from a directory without workdirs/digits/ (given by name,
    from the importable configs package, as outside a checkout)."""
    done = subprocess.run(
        [sys.executable, "-m", "vit_jax.train", "--config", "digits_finetune",
         "--workdir", "workdirs/digits_ft"],
        cwd=tmp_path, env=main_job.env, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "workdirs/digits/ViT-digits.npz" in done.stderr
    assert "--config configs/digits.py" in done.stderr
