"""benchmarks/model_throughput.py times the trainer's own accumulating step beside the plain
ones; its rows' arithmetic and FLOPs, not the speed."""

from __future__ import annotations

import json

import pytest

from benchmarks import model_throughput
from tests.benchmarks.vit_flops import forward_matmul_flops


@pytest.mark.slow  # CI runs it; `-m "not slow"` skips it in the inner loop.
def test_forward_train_and_accumulating_rows(capsys):
    args = ["--models", "ViT-Ti_16", "--batches", "2", "--image_size", "32"]
    args += ["--dtypes", "float32", "--micro_batch", "1", "--train", "--accum", "2", "--json"]
    model_throughput.main(args)
    report = json.loads(capsys.readouterr().out)
    rows = report["rows"]
    assert [(r["mode"], r["micro_batch"], r["accum_steps"]) for r in rows] == [
        ("forward", "1 (1)", "-"),
        ("train", "-", "-"),
        ("train", "-", 2),
    ]
    peak = report["matmul_peak_gflop_s"]["float32"]
    for row in rows:
        assert row["gflop_s"] == pytest.approx(row["img_s"] * row["gflop_per_img"])
        assert row["img_s_core"] == pytest.approx(row["img_s"] / report["environment"]["cores"])
        assert row["of_matmul_peak"] == pytest.approx(row["gflop_s"] / peak)
    forward, train, accumulating = (row["gflop_per_img"] * 1e9 for row in rows)
    assert forward == pytest.approx(forward_matmul_flops("ViT-Ti_16", 32), rel=0.2)
    assert train == pytest.approx(3 * forward, rel=0.2)  # Forward and backward.
    assert accumulating == train  # The same update; XLA would count the loop body once.
    assert {row["matmuls"] for row in rows} == {"xla"}  # float32: "auto" is XLA's everywhere.


@pytest.mark.slow
def test_flops_of_a_model_with_onednn_matmuls_are_counted_on_xla_ones(capsys, monkeypatch):
    """XLA's cost analysis cannot see into oneDNN's custom call: a bfloat16 row where "auto"
    takes oneDNN still reports the model's FLOPs (counted on its XLA twin)."""
    import jax.numpy as jnp

    from tests.models import custom_calls
    from vit_jax.models import backend_tuning

    custom_calls.require(jnp.bfloat16, "onednn")
    monkeypatch.setattr(backend_tuning, "auto_matmul_library", lambda dtype: "onednn")
    args = ["--models", "ViT-Ti_16", "--batches", "2", "--image_size", "32"]
    args += ["--dtypes", "bfloat16", "--micro_batch", "none", "--train", "--json"]
    model_throughput.main(args)
    forward, train = json.loads(capsys.readouterr().out)["rows"]
    assert forward["matmuls"] == train["matmuls"] == "onednn"
    assert forward["gflop_per_img"] * 1e9 == pytest.approx(
        forward_matmul_flops("ViT-Ti_16", 32), rel=0.2
    )
    assert train["gflop_per_img"] == pytest.approx(3 * forward["gflop_per_img"], rel=0.2)
