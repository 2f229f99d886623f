"""benchmarks/matmul_library_step.py: one row per matmul library that runs here (each custom
call's build state in the header) and per batch size, the ratios' arithmetic (per image across
batch sizes), the same first losses (not the speed), and bad batch sizes refused."""

from __future__ import annotations

import json

import jax
import pytest

from benchmarks import matmul_library_step
from tests.models import custom_calls
from vit_jax.models.backend_tuning import CUSTOM_CALLS


@pytest.mark.slow  # CI runs it; `-m "not slow"` skips it in the inner loop.
def test_rows_ratios_and_losses(capsys):
    args = ["--model", "ViT-Ti_16", "--batch", "2", "--image_size", "32", "--dtype", "float32"]
    args += ["--libraries", "xla", *CUSTOM_CALLS, "--rounds", "1", "--json"]
    matmul_library_step.main(args)
    report = json.loads(capsys.readouterr().out)
    for library in CUSTOM_CALLS:
        if custom_calls.installed(library) and jax.default_backend() == "cpu":  # Must run here.
            assert report[library] == "built"
    names = ["xla"] + [name for name in CUSTOM_CALLS if report[name] == "built"]
    rows = report["rows"]
    assert [row["library"] for row in rows] == names
    first = rows[0]["step_s"]
    for row in rows:
        assert row["img_per_s"] == pytest.approx(2 / row["step_s"])
        assert row["vs_xla"] == pytest.approx(first / row["step_s"])  # The first row's name.
        # The same model and batch: the first two losses agree to float32 rounding.
        losses = [float(loss) for loss in row["losses"].split()]
        want = [float(loss) for loss in rows[0]["losses"].split()]
        assert losses == pytest.approx(want, rel=1e-4)


@pytest.mark.slow
def test_several_batch_sizes_compare_per_image(capsys):
    args = ["--model", "ViT-Ti_16", "--image_size", "32", "--dtype", "float32"]
    args += ["--libraries", "xla", "--batch", "2", "4", "--rounds", "1", "--json"]
    matmul_library_step.main(args)
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [(row["library"], row["batch"]) for row in rows] == [("xla", 2), ("xla", 4)]
    for row in rows:
        assert row["img_per_s"] == pytest.approx(row["batch"] / row["step_s"])
        # Per image: img/s against the first row's, named by its library and batch.
        assert row["vs_xla_b2"] == pytest.approx(row["img_per_s"] / rows[0]["img_per_s"])
    assert rows[0]["vs_xla_b2"] == pytest.approx(1.0)


@pytest.mark.parametrize("batches", [["0", "8"], ["8", "8"]])
def test_bad_batch_sizes_are_refused(batches):
    with pytest.raises(SystemExit, match="give each batch size"):
        matmul_library_step.main(["--libraries", "xla", "--batch", *batches])
