"""benchmarks/inference.py runs end to end on a one-layer model."""

from __future__ import annotations

import importlib.util
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_inference_benchmark_smoke():
    spec = importlib.util.spec_from_file_location(
        "inference_benchmark", os.path.join(REPO, "benchmarks", "inference.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = module.benchmark(
        "ViT-Ti_16", image_size=32, batch_sizes=(1,), steps=1, warmup=0, num_layers=1
    )
    assert [r["dtype"] for r in rows] == ["float32", "bfloat16"]
    for row in rows:
        assert row["latency_ms"] > 0 and row["img_per_s_per_core"] > 0
        assert row["img_per_s"] == pytest.approx(row["img_per_s_per_core"] * row["devices"])
