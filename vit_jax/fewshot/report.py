"""Few-shot results as metrics (`fewshot/<dataset>/<n>shot`) and as a printed table."""

from __future__ import annotations

import os
from collections.abc import Sequence

Results = dict[str, dict[int, float]]  # dataset -> shots -> mean test accuracy.


def to_scalars(results: Results) -> dict[str, float]:
    """`{'fewshot/<dataset>/<n>shot': accuracy}` for TensorBoard and metrics.jsonl."""
    return {
        f"fewshot/{short_name(name)}/{n}shot": accuracy
        for name, per_shot in results.items()
        for n, accuracy in per_shot.items()
    }


def short_name(dataset: str) -> str:
    """An image-folder path's last component; TFDS names unchanged."""
    return os.path.basename(dataset.rstrip("/")) or dataset


def format_table(results: Results, shots: Sequence[int]) -> str:
    """Datasets as rows, shot counts as columns, accuracies in percent ('-': skipped)."""
    width = max([len("dataset"), *(len(short_name(name)) for name in results)])
    header = f"{'dataset':<{width}}" + "".join(f"{f'{n}-shot':>9}" for n in shots)
    rows = [
        f"{short_name(name):<{width}}"
        + "".join(f"{f'{per_shot[n]:.1%}' if n in per_shot else '-':>9}" for n in shots)
        for name, per_shot in results.items()
    ]
    return "\n".join([header, *rows])
