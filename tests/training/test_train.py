"""`train_and_evaluate` end to end on the offline digits data: metrics, checkpoints, the
published-layout .npz, fine-tuning from it, and exact resumption after SIGTERM."""

from __future__ import annotations

import glob
import json
import math
import os
import signal
import subprocess
import sys
from unittest import mock

import jax
import ml_collections
import numpy as np
import pytest

from configs import digits_finetune
from tests.training import tiny_config
from tests.training.conftest import REPO_ROOT, child_env
from vit_jax import checkpoint, data, sharding
from vit_jax.data import dataset as data_dataset
from vit_jax.training import metrics
from vit_jax.training.loop import train_and_evaluate
from vit_jax.training.train_state import CHECKPOINT_DIR
from vit_jax.training.trainer import Trainer


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """A shortened digits run from scratch that saves its parameters as a published .npz."""
    workdir = str(tmp_path_factory.mktemp("digits"))
    config = tiny_config.get_config()
    config.update(total_steps=40, eval_every=20, checkpoint_every=20, save_npz="tiny.npz")
    config.model.model_name = "tiny"
    original, opened = data_dataset.open_source, []

    def counting_open_source(cfg):
        opened.append(cfg.dataset)
        return original(cfg)

    with mock.patch.object(data_dataset, "open_source", counting_open_source):
        result = train_and_evaluate(config, workdir)
    return config, workdir, result, opened


def test_the_dataset_is_opened_once_per_run(digits_run):
    *_, opened = digits_run
    assert opened == ["digits"]  # The trainer and both iterators share one opened dataset.


def test_digits_run_writes_metrics_checkpoints_and_npz(digits_run):
    config, workdir, result, _ = digits_run
    assert result.step == 40 and not result.preempted
    with open(os.path.join(workdir, "config.json")) as f:
        recorded = json.load(f)
    # Left unset, accum_steps is recorded as the trainer resolved it (a resume that splits
    # batches differently is then listed as a config change).
    assert config.accum_steps is None and recorded["accum_steps"] == 1
    assert recorded["batch"] == config.batch
    assert result.eval_metrics["test_accuracy"] > 0.3  # 10 classes; 40 tiny steps.
    assert sorted(result.train_losses) == list(range(1, 41))

    records = metrics.read_metrics(workdir)
    train = [r for r in records if "train_loss" in r]
    assert [r["step"] for r in train] == list(range(1, 41))
    assert {"learning_rate", "grad_norm"} <= set(train[0])
    assert "img_sec_core_train" in train[-1]
    assert [r["train_loss"] for r in train] == [result.train_losses[s] for s in range(1, 41)]
    evals = [r for r in records if "test_accuracy" in r]
    assert [r["step"] for r in evals] == [20, 40]
    assert evals[-1]["test_accuracy"] == result.eval_metrics["test_accuracy"]
    assert glob.glob(os.path.join(workdir, "events.out.tfevents.*"))  # TensorBoard.

    assert sorted(os.listdir(os.path.join(workdir, CHECKPOINT_DIR))) == ["20", "40"]
    params = checkpoint.load(result.npz_path)
    assert params["head"]["kernel"].shape == (16, 10)
    assert params["Transformer"]["posembed_input"]["pos_embedding"].shape == (1, 5, 16)


def test_resume_with_other_data_settings_is_refused_and_keeps_the_checkpoints(digits_run):
    """A changed batch is the user's change, not damage: refused, nothing moved aside."""
    config, workdir, _, _ = digits_run
    config = ml_collections.ConfigDict(config.to_dict())
    config.update(total_steps=60, batch=32)
    before = sorted(os.listdir(os.path.join(workdir, CHECKPOINT_DIR)))
    with pytest.raises(data.DataError, match=r"batch: 16 -> 32"):
        train_and_evaluate(config, workdir)
    assert sorted(os.listdir(os.path.join(workdir, CHECKPOINT_DIR))) == before == ["20", "40"]
    assert not [p for p in os.listdir(workdir) if "damaged" in p]


def test_finetune_from_npz_at_another_resolution(digits_run, tmp_path):
    """12 px instead of 8: position embeddings resized 2x2 -> 3x3, head from scratch."""
    _, workdir, result, _ = digits_run
    config = tiny_config.shrink(digits_finetune.get_config(workdir), image_size=12)
    config.model.model_name = "tiny"  # Loads <workdir>/tiny.npz.
    config.update(total_steps=10, eval_every=0)
    pretrained = checkpoint.load(result.npz_path)

    mesh = sharding.make_mesh(config.mesh)
    trainer = Trainer(config, mesh, info=_digits_info(image_size=12))
    params = trainer.host_params(trainer.initial_state())
    assert params["Transformer"]["posembed_input"]["pos_embedding"].shape == (1, 10, 16)
    np.testing.assert_array_equal(params["head"]["kernel"], 0.0)
    np.testing.assert_array_equal(
        params["Transformer"]["encoderblock_0"]["MlpBlock_3"]["Dense_0"]["kernel"],
        pretrained["Transformer"]["encoderblock_0"]["MlpBlock_3"]["Dense_0"]["kernel"],
    )
    np.testing.assert_array_equal(params["embedding"]["kernel"], pretrained["embedding"]["kernel"])

    finetuned = train_and_evaluate(config, str(tmp_path))
    assert finetuned.step == 10
    # The zero head predicts uniformly at first; ten steps on the loaded features do better
    # (measured: 20.3% test accuracy, chance is 10%; test loss 2.245 against ln(10) = 2.303).
    assert finetuned.train_losses[1] == pytest.approx(math.log(10), abs=1e-5)
    assert finetuned.eval_metrics["test_accuracy"] > 0.15
    assert finetuned.eval_metrics["test_loss"] < math.log(10) - 0.03


def _digits_info(image_size):
    from vit_jax import data

    config = tiny_config.shrink(tiny_config.get_config(), image_size=image_size)
    return data.get_dataset_info(config)


@pytest.mark.slow  # CI runs it; `-m "not slow"` skips it in the inner loop.
def test_sigterm_saves_and_resuming_reproduces_the_losses(tmp_path):
    """SIGTERM mid-run: a checkpoint, exit 0; the rerun continues with identical losses."""
    total = 800
    overrides = [f"--config.total_steps={total}", "--config.progress_every=1"]
    config = tiny_config.get_config()
    config.update(total_steps=total)
    reference = train_and_evaluate(config, str(tmp_path / "reference"))

    workdir = str(tmp_path / "preempted")
    command = [sys.executable, "-m", "vit_jax.train", "--config=tests/training/tiny_config.py"]
    child = subprocess.Popen(
        [*command, f"--workdir={workdir}", *overrides],
        cwd=REPO_ROOT,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        for line in child.stdout:
            if line.startswith("step") and int(line.split()[1].split("/")[0]) >= 20:
                child.send_signal(signal.SIGTERM)
                break
        output = child.communicate(timeout=120)[0]
    finally:
        child.kill()
    assert child.returncode == 0, output
    assert "Preempted: saved step" in output
    stopped = int(output.split("Preempted: saved step ")[1].split()[0])
    assert 20 <= stopped < total

    resumed = train_and_evaluate(config, workdir)
    assert min(resumed.train_losses) == stopped + 1 and resumed.step == total
    records = metrics.read_metrics(workdir)
    losses = {r["step"]: r["train_loss"] for r in records if "train_loss" in r}
    assert losses == reference.train_losses  # Bit for bit, before and after the restart.
    assert jax.tree.leaves(resumed.eval_metrics) == jax.tree.leaves(reference.eval_metrics)


def test_workdir_params_read_back_for_conversion(digits_run, tmp_path):
    """A training workdir's latest checkpoint gives the final parameters, and converts."""
    from vit_jax.checkpoint import layout
    from vit_jax.convert import convert
    from vit_jax.training import train_state

    _, workdir, result, _ = digits_run
    final = layout.flatten(checkpoint.load(result.npz_path))
    from_workdir = layout.flatten(train_state.load_params(workdir))
    assert from_workdir.keys() == final.keys()
    for key, value in final.items():
        np.testing.assert_array_equal(from_workdir[key], value, err_msg=key)
    earlier = layout.flatten(train_state.load_params(workdir, step=20))
    assert not np.array_equal(earlier["head/kernel"], final["head/kernel"])
    with pytest.raises(FileNotFoundError, match="no checkpoint at step 7"):
        train_state.load_params(workdir, step=7)

    converted = str(tmp_path / "from_workdir.npz")
    convert(workdir, converted, to="npz")
    for key, value in layout.flatten(checkpoint.load(converted)).items():
        np.testing.assert_array_equal(value, final[key], err_msg=key)
