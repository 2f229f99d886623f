"""benchmarks/gpu_train.py's vit_jax side on CPU (the torch side needs no GPU either, but
torch.compile takes a minute): the report's fields and their arithmetic, not the speed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from benchmarks import gpu_train
from tests.benchmarks.vit_flops import forward_matmul_flops


def test_report_rows_and_their_arithmetic(capsys):
    gpu_train.main(
        [
            "--models",
            "ViT-Ti_16",
            "--batch",
            "2",
            "--image_size",
            "32",
            "--rows",
            "step",
            "trainer",
            "--matmul_outputs",
            "compute",
            "--json",
        ]
    )
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["image_size"] == 32 and report["environment"]["backend"] == "cpu"
    row, trainer = report["rows"]
    assert (row["model"], row["implementation"], row["batch"]) == (
        "ViT-Ti_16",
        "vit_jax step (xla)",
        2,
    )
    assert trainer["implementation"] == "vit_jax trainer"
    assert report["matmul_outputs"] == "compute"
    assert min(row["best_vit_jax_vs_this"], trainer["best_vit_jax_vs_this"]) == 1.0
    for each in (row, trainer):
        assert each["best_vit_jax_vs_this"] >= 1.0
        assert each["mfu_vs_matmul_peak"] == pytest.approx(
            each["tflop_s"] / report["bf16_matmul_peak_tflop_s"]
        )
    # Each row's progress line went to stderr as it was measured.
    assert '"implementation": "vit_jax trainer"' in captured.err
    assert '"matmul_outputs": "compute"' in captured.err
    # Matmul FLOPs of the step, per image: the forward pass and its backward, about 3x forward.
    flops_per_image = row["tflop_s"] / row["img_s"] * 1e12
    assert flops_per_image == pytest.approx(3 * forward_matmul_flops("ViT-Ti_16", 32), rel=0.2)


# GPU images often carry JAX and torch but not TensorFlow (the H200 used for issue 17 did not).
_WITHOUT_TENSORFLOW = textwrap.dedent(
    """
    import sys, importlib.abc

    class NoTensorFlow(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in ("tensorflow", "tensorflow_datasets"):
                raise ImportError(f"{name} is not installed here")

    sys.meta_path.insert(0, NoTensorFlow())
    from benchmarks import gpu_train
    print(gpu_train.matmul_flops("ViT-Ti_16", 2, 32))
    """
)


def test_flop_count_needs_no_tensorflow():
    """`gpu_train` and its FLOP count (`vit_jax.plan.flops`) import without TensorFlow."""
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "JAX_PLATFORMS": "cpu"}
    result = subprocess.run(
        [sys.executable, "-c", _WITHOUT_TENSORFLOW], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert float(result.stdout) == pytest.approx(
        3 * forward_matmul_flops("ViT-Ti_16", 32) * 2, rel=0.2
    )
