"""benchmarks/attention_matmuls.py: a row per form and dtype, each product equal to NumPy's,
and its FLOPs and ratios' arithmetic (not the speed)."""

from __future__ import annotations

import json

import pytest

from benchmarks import attention_matmuls


def test_rows_values_and_arithmetic(capsys):
    batch, tokens, heads, head_dim = 2, 5, 3, 4
    args = ["--batch", "2", "--tokens", "5", "--heads", "3", "--head_dim", "4", "--repeats", "1"]
    attention_matmuls.main([*args, "--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["bnhk"] == [batch, tokens, heads, head_dim]
    rows = {(row["matmul"], row["dtype"]): row for row in report["rows"]}
    assert set(rows) == {
        (name, dtype) for name in ("qk", "pv", "ptx", "dense") for dtype in ("bfloat16", "float32")
    }
    # Multiply-adds of each form: every output element sums over the contracted axis.
    products = {
        "qk": batch * heads * tokens * tokens * head_dim,
        "pv": batch * heads * tokens * head_dim * tokens,
        "ptx": batch * heads * tokens * head_dim * tokens,
        "dense": batch * tokens * (heads * head_dim) * (4 * heads * head_dim),
    }
    for (name, dtype), row in rows.items():
        flops = 2 * products[name]
        assert row["xla_gflops"] == pytest.approx(flops / (row["xla_ms"] * 1e6))
        assert row["xla_cores_busy"] > 0
        if row["torch_ms"] is not None:
            assert row["torch_gflops"] == pytest.approx(flops / (row["torch_ms"] * 1e6))
            assert row["torch_vs_xla"] == pytest.approx(row["xla_ms"] / row["torch_ms"])
            # torch returns bfloat16 products rounded to bfloat16 (relative error <= 2^-8).
            assert row["torch_max_rel_diff"] < (1e-2 if dtype == "bfloat16" else 1e-5)
        # Both sides multiply the same bfloat16-rounded values, whose products are exact in
        # float32, and XLA accumulates and returns float32: only the summation order differs.
        assert row["max_rel_diff"] < 1e-5, (name, dtype)
        if report["onednn"][dtype] == "built":  # oneDNN, like XLA, returns float32 sums.
            assert row["onednn_max_rel_diff"] < 1e-5, (name, dtype)
            assert row["onednn_gflops"] == pytest.approx(flops / (row["onednn_ms"] * 1e6))
            assert row["onednn_vs_xla"] == pytest.approx(row["xla_ms"] / row["onednn_ms"])
        else:
            assert row["onednn_ms"] is None and row["onednn_max_rel_diff"] is None
