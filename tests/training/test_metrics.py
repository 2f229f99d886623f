"""The metrics.jsonl writer, throughput and the console line."""

from __future__ import annotations

import math

import numpy as np

from vit_jax.training import metrics


def test_jsonl_writer_appends_one_object_per_write(tmp_path):
    writer = metrics.JsonlWriter(tmp_path / metrics.METRICS_FILE)
    writer.write_scalars(1, {"train_loss": np.float32(0.5), "learning_rate": 0.1})
    writer.write_images(1, {"x": np.zeros((1, 2, 2, 3))})  # Ignored.
    writer.write_scalars(2, {"test_accuracy": 0.75})
    writer.close()
    assert metrics.read_metrics(tmp_path) == [
        {"step": 1, "train_loss": 0.5, "learning_rate": 0.1},
        {"step": 2, "test_accuracy": 0.75},
    ]


def test_throughput_excludes_paused_time(monkeypatch):
    clock = iter([0.0, 10.0, 13.0, 20.0])
    monkeypatch.setattr(metrics.time, "perf_counter", lambda: next(clock))
    throughput = metrics.Throughput(total_steps=100, batch=64, num_devices=8)
    assert throughput.report(5) == {}  # Not started.
    throughput.start(1)  # t=0
    with throughput.paused():  # t=10 .. 13
        pass
    # t=20: 9 steps in 20 - 3 = 17 s.
    rate = throughput.report(10)["img_sec_core_train"]
    assert math.isclose(rate, 64 * 9 / 17 / 8)
    assert math.isclose(throughput.eta(10), 90 * 17 / 9)


def test_progress_line(capsys):
    scalars = {"learning_rate": 0.01, "train_loss": 0.25, "img_sec_core_train": 1234.5}
    metrics.print_progress(50, 1000, scalars, eta=83)
    line = capsys.readouterr().out.strip()
    assert line == "step   50/1000 | train_loss 0.2500 | lr 0.01 | 1,234 img/s/core | ETA 1m23s"
