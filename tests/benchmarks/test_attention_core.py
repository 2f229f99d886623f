"""benchmarks/attention_core.py: one row per dtype, its ratios' arithmetic, and the two JAX
paths' gradients agreeing (not the speed)."""

from __future__ import annotations

import json

import jax
import pytest

from benchmarks import attention_core
from tests.models import custom_calls


def test_rows_ratios_and_agreement(capsys):
    args = ["--batch", "1", "--tokens", "5", "--heads", "2", "--head_dim", "4"]
    attention_core.main([*args, "--repeats", "1", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["qkv_shape"] == [1, 5, 3, 2, 4]
    rows = {row["dtype"]: row for row in report["rows"]}
    assert set(rows) == {"bfloat16", "float32"}
    for row in rows.values():
        assert row["packed_speedup"] == pytest.approx(row["explicit_ms"] / row["packed_ms"])
        if row["torch_sdpa_ms"] is not None:
            assert row["packed_vs_torch"] == pytest.approx(row["torch_sdpa_ms"] / row["packed_ms"])
    assert rows["float32"]["max_rel_diff"] == 0.0  # The same function for float32.
    assert 0.0 < rows["bfloat16"]["max_rel_diff"] < 0.05
    # It must have run here:
    if custom_calls.installed("onednn") and jax.default_backend() == "cpu":
        assert report["onednn"]["float32"] == "built"
    for dtype, row in rows.items():  # oneDNN's products: empty columns where it cannot run.
        if report["onednn"][dtype] != "built":
            assert row["onednn_ms"] is None and row["onednn_vs_packed"] is None
            continue
        assert row["onednn_vs_packed"] == pytest.approx(row["packed_ms"] / row["onednn_ms"])
        assert row["onednn_max_rel_diff"] < (1e-5 if dtype == "float32" else 0.05)
