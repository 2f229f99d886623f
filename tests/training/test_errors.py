"""User errors end in one clear paragraph and exit status 2 (no traceback), within seconds;
a diverging run stops with status 1 and keeps its last good checkpoint."""

from __future__ import annotations

import os
import time

import pytest

from tests.training import synthetic
from tests.training.conftest import REPO_ROOT
from vit_jax import train
from vit_jax.errors import TrainingDivergedError
from vit_jax.training import loop
from vit_jax.training.train_state import CHECKPOINT_DIR

CONFIG = "--config=tests/training/tiny_config.py"


@pytest.fixture(autouse=True)
def in_repo_root(monkeypatch):
    monkeypatch.chdir(REPO_ROOT)  # Config files are given relative to the repository.


def run_main(capsys, *args):
    start = time.perf_counter()
    code = train.main(["vit_jax.train", *args])
    seconds = time.perf_counter() - start
    captured = capsys.readouterr()
    return code, captured.err, seconds


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--config.batchsize=8"], "Unknown config key 'batchsize'"),
        (["--config.pp.crops=8"], "Did you mean pp.crop?"),
        (["--config.batch=12"], "config.batch=12 is not divisible by 8"),
        (["--config.mesh.fsdp=3"], "config.mesh"),
        (["--config.optimizer=lamb"], "Unknown optimizer 'lamb'"),
        (["--config.dataset=cifar10", "--config.tfds_data_dir=/nonexistent"], "cifar10"),
    ],
)
def test_user_errors_exit_2_with_a_message(capsys, tmp_path, args, expected):
    code, err, seconds = run_main(capsys, CONFIG, f"--workdir={tmp_path}", *args)
    assert code == 2
    assert expected in err
    assert "Traceback" not in err
    assert seconds < 60


def test_missing_config_file(capsys, tmp_path):
    code, err, _ = run_main(capsys, "--config=configs/nope.py", f"--workdir={tmp_path}")
    assert code == 2 and "configs/nope.py" in err and "Traceback" not in err


def test_missing_pretrained_file_names_the_path_and_the_published_files(capsys, tmp_path):
    missing = tmp_path / "models"
    code, err, _ = run_main(
        capsys,
        CONFIG,
        f"--workdir={tmp_path / 'run'}",
        f"--config.pretrained_dir={missing}",
    )
    assert code == 2
    assert str(missing / "ViT-digits.npz") in err
    assert "gs://vit_models" in err


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(loop, "data", synthetic.SyntheticData(nan_at=5))
    config = synthetic.tiny_synthetic_config()
    config.update(total_steps=8, checkpoint_every=2)
    with pytest.raises(TrainingDivergedError, match="at step 5") as error:
        loop.train_and_evaluate(config, str(tmp_path))
    # Step 5's loss is computed on the state saved at step 4, so only step 2 is known good;
    # step 4 is set aside, not deleted.
    assert "last good checkpoint (step 2)" in str(error.value)
    assert sorted(os.listdir(tmp_path / CHECKPOINT_DIR)) == ["2"]
    assert os.listdir(tmp_path / f"{CHECKPOINT_DIR}.damaged") == ["4"]
