"""Few-shot evaluation of real features: in a training run, from the CLI, trained vs random."""

from __future__ import annotations

import glob
import json
import os

import jax
import pytest
import tensorflow as tf

from configs import digits
from tests.fewshot.conftest import STEPS
from vit_jax import sharding
from vit_jax.errors import ConfigError
from vit_jax.fewshot import cli
from vit_jax.training import metrics
from vit_jax.training.loop import check_config

SHOTS = (1, 5, 10, 25)


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def cli_json(capsys, npz: str) -> dict[int, float]:
    code, out, _ = run_cli(capsys, "--checkpoint", npz, "--dataset", "digits", "--json")
    assert code == 0
    results = json.loads(out.strip().splitlines()[-1])
    assert set(results) == {"digits"} and set(results["digits"]) == {str(n) for n in SHOTS}
    return {int(n): acc for n, acc in results["digits"].items()}


def test_training_writes_fewshot_metrics(digits_run):
    keys = {f"fewshot/digits/{n}shot" for n in SHOTS}
    records = [r for r in metrics.read_metrics(digits_run.workdir) if keys & set(r)]
    assert [r["step"] for r in records] == [STEPS // 2, STEPS]
    assert all(keys <= set(r) and all(0 <= r[k] <= 1 for k in keys) for r in records)
    assert digits_run.result.fewshot_metrics == {k: records[-1][k] for k in keys}

    tags = {
        value.tag
        for path in glob.glob(os.path.join(digits_run.workdir, "events.out.tfevents.*"))
        for event in tf.compat.v1.train.summary_iterator(path)
        for value in event.summary.value
    }
    assert keys <= tags


def test_trained_features_few_shot_far_better_than_random_init(digits_run, random_npz, capsys):
    trained = cli_json(capsys, digits_run.result.npz_path)
    random = cli_json(capsys, random_npz)
    for n in SHOTS:
        assert trained[n] > random[n] + 0.15, (n, trained, random)
    for accuracy in (trained, random):  # More examples per class, better fits.
        assert accuracy[1] < accuracy[5] < accuracy[25] and accuracy[1] < accuracy[10]
    # The CLI (data-parallel mesh, other batches) agrees with the run's (FSDP) evaluation.
    for n in SHOTS:
        in_run = digits_run.result.fewshot_metrics[f"fewshot/digits/{n}shot"]
        assert trained[n] == pytest.approx(in_run, abs=0.02)


def test_cli_table_marks_shots_without_enough_examples(digits_run, capsys):
    code, out, _ = run_cli(
        capsys, "--checkpoint", digits_run.result.npz_path, "--dataset", "digits",
        "--shots", "1", "500", "--seeds", "1",
    )  # fmt: skip
    assert code == 0
    assert "skipped [500] shots" in out and "Use fewer shots" in out
    header, row = out.strip().splitlines()[-2:]
    assert header.split() == ["dataset", "1-shot", "500-shot"]
    name, one_shot, skipped = row.split()
    assert name == "digits" and one_shot.endswith("%") and skipped == "-"


def test_cli_reports_a_bad_checkpoint_in_one_paragraph(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_text("not a checkpoint")
    code, out, err = run_cli(capsys, "--checkpoint", str(bad), "--dataset", "digits")
    assert code == 2 and not out
    assert err.startswith("Error: ") and "bad.npz" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "key, value", [("shots", (0, 5)), ("seeds", 0), ("holdout", 0), ("every", -1)]
)
def test_bad_fewshot_settings_are_config_errors(key, value):
    config = digits.get_config()
    config.fewshot[key] = value
    mesh = sharding.make_mesh({"data": -1, "fsdp": 1}, jax.devices()[:1])
    with pytest.raises(ConfigError, match=f"fewshot.{key}"):
        check_config(config, mesh)
