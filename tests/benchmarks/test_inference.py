"""benchmarks/inference.py on a one-layer ViT-Ti: its rows, their arithmetic, the table and the
command line's checks (no timing is judged)."""

from __future__ import annotations

import jax
import pytest

from benchmarks import inference


@pytest.fixture(scope="module")
def rows():
    return inference.benchmark(
        "ViT-Ti_16", image_size=32, batch_sizes=(1,), steps=1, warmup=0, num_layers=1
    )


def test_a_row_per_dtype_with_consistent_throughput(rows):
    assert [(r["dtype"], r["batch_per_core"]) for r in rows] == [("float32", 1), ("bfloat16", 1)]
    for row in rows:
        assert row["model"] == "ViT-Ti_16" and row["image_size"] == 32
        assert row["devices"] == jax.local_device_count()  # Each step shards over all of them.
        seconds = row["latency_ms"] / 1000
        assert row["img_per_s"] == pytest.approx(row["batch_per_core"] * row["devices"] / seconds)
        assert row["img_per_s_per_core"] == pytest.approx(row["batch_per_core"] / seconds)


def test_table_prints_a_line_per_row(rows):
    head, columns, *lines = inference._table(rows).splitlines()
    assert head.startswith(f"ViT-Ti_16 at 32px on {jax.local_device_count()} x ")
    assert columns.split() == "dtype batch/core compile s latency ms img/s/core img/s".split()
    assert len(lines) == len(rows)
    for line, row in zip(lines, rows):
        dtype, batch, *numbers = line.split()
        assert (dtype, int(batch)) == (row["dtype"], row["batch_per_core"])
        assert float(numbers[-1]) == pytest.approx(row["img_per_s"], abs=0.05)


def test_command_line_refuses_an_image_size_the_patches_do_not_divide(capsys):
    with pytest.raises(SystemExit) as exit_info:
        inference.main(["--model", "ViT-Ti_16", "--image_size", "30"])
    assert exit_info.value.code == 2
    assert "not a multiple of ViT-Ti_16's patch stride 16" in capsys.readouterr().err
