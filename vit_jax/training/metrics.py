"""Where metrics go: TensorBoard event files, `workdir/metrics.jsonl` and console progress."""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from collections.abc import Iterator, Mapping
from typing import Any

from clu import metric_writers

METRICS_FILE = "metrics.jsonl"


class JsonlWriter(metric_writers.MetricWriter):
    """Appends one JSON object per `write_scalars` call: `{"step": 10, "train_loss": 0.5}`."""

    def __init__(self, path: str | os.PathLike):
        self._file = open(path, "a")  # Closed in close().

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        record = {"step": int(step), **{k: float(v) for k, v in scalars.items()}}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def write_summaries(self, step, values, metadata=None) -> None:
        del step, values, metadata  # Only scalars go to the JSON lines.

    def write_images(self, step, images) -> None:
        del step, images

    def write_videos(self, step, videos) -> None:
        del step, videos

    def write_audios(self, step, audios, *, sample_rate) -> None:
        del step, audios, sample_rate

    def write_texts(self, step, texts) -> None:
        del step, texts

    def write_histograms(self, step, arrays, num_buckets=None) -> None:
        del step, arrays, num_buckets

    def write_hparams(self, hparams) -> None:
        del hparams

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def create_writer(workdir: str | os.PathLike, *, primary: bool) -> metric_writers.MetricWriter:
    """TensorBoard events in `workdir` plus `workdir/metrics.jsonl`; nothing off the primary."""
    if not primary:
        return metric_writers.MultiWriter([])
    return metric_writers.MultiWriter(
        [
            metric_writers.SummaryWriter(os.fspath(workdir)),
            JsonlWriter(os.path.join(workdir, METRICS_FILE)),
        ]
    )


def read_metrics(workdir: str | os.PathLike) -> list[dict[str, float]]:
    """The records of `workdir/metrics.jsonl`, in order."""
    with open(os.path.join(workdir, METRICS_FILE)) as f:
        return [json.loads(line) for line in f if line.strip()]


def format_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


class Throughput:
    """Images per second per device between reports, and the time left.

    Time spent in `paused()` blocks (evaluation, checkpoints) counts towards neither.
    """

    def __init__(self, *, total_steps: int, batch: int, num_devices: int):
        self._total_steps = total_steps
        self._batch = batch
        self._num_devices = num_devices
        self._last_step: int | None = None
        self._last_time = 0.0
        self._paused = 0.0
        self._sec_per_step = math.nan

    def start(self, step: int, now: float | None = None) -> None:
        """Starts timing after `step` (call once the first, compiling, step has finished)."""
        now = time.perf_counter() if now is None else now
        self._last_step, self._last_time, self._paused = step, now, 0.0

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        begin = time.perf_counter()
        try:
            yield
        finally:
            self._paused += time.perf_counter() - begin

    def report(self, step: int) -> dict[str, float]:
        """`img_sec_core_train` since the last report (empty before `start` or at no progress)."""
        if self._last_step is None or step <= self._last_step:
            return {}
        now = time.perf_counter()
        elapsed = now - self._last_time - self._paused
        self._sec_per_step = max(elapsed, 1e-9) / (step - self._last_step)
        self.start(step, now)
        return {"img_sec_core_train": self._batch / self._sec_per_step / self._num_devices}

    def eta(self, step: int) -> float:
        return (self._total_steps - step) * self._sec_per_step


PROGRESS_ORDER = ("train_loss", "test_accuracy", "test_loss", "learning_rate")


def print_progress(step: int, total_steps: int, scalars: Mapping[str, float], eta: float) -> None:
    """`step   100/1000 | train_loss 0.4123 | 1234 img/s/core | ETA 1m23s` on stdout."""
    parts = [f"step {step:>{len(str(total_steps))}}/{total_steps}"]
    first = [name for name in PROGRESS_ORDER if name in scalars]
    for name in first + sorted(set(scalars) - set(first)):
        value = scalars[name]
        if name == "img_sec_core_train":
            parts.append(f"{value:,.0f} img/s/core")
        elif name == "learning_rate":
            parts.append(f"lr {value:.3g}")
        else:
            parts.append(f"{name} {value:.4f}")
    if not math.isnan(eta):
        parts.append(f"ETA {format_duration(eta)}")
    print(" | ".join(parts), file=sys.stdout, flush=True)
