"""Finding the step where training blew up, and which checkpoints came before it.

A step is bad when its loss or gradient norm is NaN or infinite, or more than `EXPLODED`
times the median of the previous `WINDOW` steps (an exploding loss reaches 1e5 while it is
still finite, and the NaN comes a step or two later). The loss and gradient norm of step s
are computed on the state after s - 1 updates, so when step s is the first bad one the state
saved at step s - 1 is already bad: only checkpoints of steps before s - 1 are good.
"""

from __future__ import annotations

import collections
import math
import statistics

WINDOW = 50  # Steps of history for the running median.
EXPLODED = 1e3  # Times the running median: far beyond any recoverable spike.
WATCHED = ("train_loss", "grad_norm")


class DivergenceMonitor:
    """`check(step, metrics)` returns what is wrong with the step, or None."""

    def __init__(self) -> None:
        self._history = {key: collections.deque(maxlen=WINDOW) for key in WATCHED}

    def check(self, step: int, metrics: dict[str, float]) -> str | None:
        problems = []
        for key in WATCHED:
            if key not in metrics:
                continue
            value, history = metrics[key], self._history[key]
            if not math.isfinite(value):
                problems.append(f"{key} is {value}")
            elif history and abs(value) > EXPLODED * statistics.median(history):
                median = statistics.median(history)
                problems.append(
                    f"{key} {value:.6g} is {abs(value) / median:,.0f}x the median of the last "
                    f"{len(history)} steps ({median:.4g})"
                )
        if problems:
            return f"at step {step}: {'; '.join(problems)}"
        for key in WATCHED:
            if key in metrics:
                self._history[key].append(abs(metrics[key]))
        return None


def last_good_step(first_bad_step: int, saved_steps: list[int]) -> int | None:
    """The newest checkpoint step whose state was trained before the first bad step."""
    good = [s for s in saved_steps if s < first_bad_step - 1]
    return max(good) if good else None
