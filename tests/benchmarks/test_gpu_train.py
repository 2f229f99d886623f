"""benchmarks/gpu_train.py's vit_jax side on CPU (the torch side needs no GPU either, but
torch.compile takes a minute): the report's fields and their arithmetic, not the speed."""

from __future__ import annotations

import json

import pytest

from benchmarks import gpu_train
from tests.benchmarks.vit_flops import forward_matmul_flops


def test_report_rows_and_their_arithmetic(capsys):
    gpu_train.main(
        ["--models", "ViT-Ti_16", "--batch", "2", "--image_size", "32", "--no_torch", "--json"]
    )
    report = json.loads(capsys.readouterr().out)
    assert report["image_size"] == 32 and report["environment"]["backend"] == "cpu"
    (row,) = report["rows"]
    assert (row["model"], row["implementation"], row["batch"]) == ("ViT-Ti_16", "vit_jax (xla)", 2)
    assert row["best_vit_jax_vs_this"] == 1.0  # The one vit_jax row is the best one.
    assert row["mfu_vs_matmul_peak"] == pytest.approx(
        row["tflop_s"] / report["bf16_matmul_peak_tflop_s"]
    )
    # XLA's FLOPs of the step, per image: the forward pass and its backward, about 3x forward.
    flops_per_image = row["tflop_s"] / row["img_s"] * 1e12
    assert flops_per_image == pytest.approx(3 * forward_matmul_flops("ViT-Ti_16", 32), rel=0.2)
