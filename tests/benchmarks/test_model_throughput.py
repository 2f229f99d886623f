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
