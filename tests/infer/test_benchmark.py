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


def test_gpu_train_benchmark_smoke(capsys):
    """benchmarks/gpu_train.py's vit_jax side on CPU (the torch side needs no GPU either, but
    torch.compile takes a minute)."""
    import json

    from benchmarks import gpu_train

    gpu_train.main(
        ["--models", "ViT-Ti_16", "--batch", "2", "--image_size", "32", "--no_torch", "--json"]
    )
    report = json.loads(capsys.readouterr().out)
    (row,) = report["rows"]
    assert row["implementation"] == "vit_jax (xla)" and row["img_s"] > 0
    assert 0 < row["mfu_vs_matmul_peak"] < 2


def test_torch_models_match_our_architecture():
    """The HF ViT the torch benchmarks build has our variant's parameter count."""
    pytest.importorskip("transformers")
    from benchmarks.torch_compare import torch_models

    _, model = torch_models(224, "ViT-Ti_16")
    assert sum(p.numel() for p in model.parameters()) == 5_717_416  # ViT-Ti/16, 1000 classes.
    with pytest.raises(ValueError, match="token-pooled plain ViTs"):
        torch_models(224, "R50+ViT-B_16")


@pytest.mark.slow  # CI runs it; `-m "not slow"` skips it in the inner loop.
def test_throughput_benchmark_times_the_trainers_accumulating_step(capsys):
    import json

    from benchmarks import model_throughput

    args = ["--models", "ViT-Ti_16", "--batches", "2", "--image_size", "32"]
    args += ["--dtypes", "float32", "--micro_batch", "1", "--train", "--accum", "2", "--json"]
    model_throughput.main(args)
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [(r["mode"], r["micro_batch"], r["accum_steps"]) for r in rows] == [
        ("forward", "1 (1)", "-"),
        ("train", "-", "-"),
        ("train", "-", 2),
    ]
    assert all(r["img_s"] > 0 and r["gflop_per_img"] > 0 for r in rows)
