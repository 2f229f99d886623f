"""`python -m vit_jax.plan`: a JSON report, and one-paragraph errors with exit status 2."""

from __future__ import annotations

import json
import sys

import pytest

from tests.training.conftest import REPO_ROOT
from vit_jax.plan import cli

CONFIG = "--config=tests/training/tiny_config.py"


@pytest.fixture(autouse=True)
def in_repo_root(monkeypatch):
    monkeypatch.chdir(REPO_ROOT)


def run(capsys, *args):
    code = cli.main(["vit_jax.plan", CONFIG, *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_json_report_and_a_run_that_does_not_fit(libtpu, capsys):
    code, out, _ = run(capsys, "--topology=v5e:2x2", "--config.batch_eval=16", "--json")
    assert code == 0
    report = json.loads(out)
    for key in ("topology", "chips", "device_kind", "bytes_per_chip", "hbm_bytes_per_chip",
                "fits", "flops_per_step", "compile_seconds"):  # fmt: skip
        assert key in report
    assert (report["topology"], report["chips"], report["fits"]) == ("v5e:2x2", 4, True)
    # Leave (almost) no HBM free: still exit 0, with what to change.
    code, out, _ = run(
        capsys, "--topology=v5e:2x2", "--eval=false", "--headroom=0.9999999", "--json"
    )
    report = json.loads(out)
    assert code == 0 and report["fits"] is False
    assert any("remat" in tip for tip in report["suggestions"])


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--topology=v9x:2x2"], "Valid examples"),
        (["--topology=v5e"], "Unknown topology"),
        (["--topology=v5e:2x2", "--config.mesh.fsdp=3"], "config.mesh"),
        (["--topology=v5e:2x2", "--config.batch=6"], "config.batch=6 is not divisible by 4"),
        (["--topology=v5e:2x2", "--config.dataset=/data/my_images"], "--num_classes"),
        (["--topology=v5e:2x2", "--config.batchsize=8"], "Unknown config key"),
    ],
)
def test_bad_input_is_one_paragraph(libtpu, capsys, args, expected):
    code, _, err = run(capsys, *args)
    assert code == 2
    assert expected in err and "Traceback" not in err


def test_missing_libtpu_says_how_to_install(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "libtpu", None)  # `import libtpu` raises ImportError.
    code, _, err = run(capsys, "--topology=v5e:2x2")
    assert code == 2 and 'pip install -e ".[tpu]"' in err
