"""benchmarks/matmul_library_step.py: one row per matmul library that runs here (each custom
call's build state in the header), the ratios' arithmetic, and the same first losses (not the
speed)."""

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
