"""What a finished `python -m vit_jax.train` prints last: the final metrics and where every
output is, also when the run had nothing left to do (a re-run of a finished job)."""

from __future__ import annotations

import os
from collections.abc import Mapping

from vit_jax.training import metrics
from vit_jax.training.train_state import CHECKPOINT_DIR

# Metric names shown in the summary, in this order, when present; others follow sorted.
_FIRST = ("test_accuracy", "test_loss")


def last_metrics(workdir: str) -> dict[str, float]:
    """The latest value of every evaluation metric in `workdir/metrics.jsonl` (empty if none)."""
    latest: dict[str, float] = {}
    try:
        records = metrics.read_metrics(workdir)
    except FileNotFoundError:
        return latest
    for record in records:
        for name, value in record.items():
            if name.startswith(("test_", "fewshot/")):
                latest[name] = value
    return latest


def summary(
    *,
    workdir: str,
    step: int,
    total_steps: int,
    trained: bool,
    eval_metrics: Mapping[str, float],
    npz_path: str | None,
) -> str:
    """The closing lines; `eval_metrics` of this call win over older ones from metrics.jsonl."""
    found = {**last_metrics(workdir), **eval_metrics}
    shown = [name for name in _FIRST if name in found]
    shown += sorted(set(found) - set(shown))
    values = ", ".join(f"{name} {found[name]:.4f}" for name in shown) or "no evaluation yet"
    head = "Done" if trained else "Already finished (nothing left to train)"
    lines = [f"{head}: step {step}/{total_steps}, {values}."]
    if npz_path:
        lines.append(f"  parameters (published layout): {npz_path}")
    lines += [
        f"  checkpoints: {os.path.join(workdir, CHECKPOINT_DIR)}",
        f"  metrics: {os.path.join(workdir, metrics.METRICS_FILE)} "
        f"(TensorBoard: tensorboard --logdir {workdir})",
    ]
    if not trained:
        lines.append(
            "  To train further, raise --config.total_steps; to start afresh, use another "
            "--workdir."
        )
    return "\n".join(lines)
