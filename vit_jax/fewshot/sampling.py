"""Which training examples each few-shot fit uses: per class, a held-out set and nested shots.

For a seed, every class's examples are shuffled once; the first `holdout` become the
held-out examples that choose the regularisation, and the next ones are the pool from which
n-shot takes the first n. So 1-shot's example is among 5-shot's, and the held-out examples
never overlap the fitted ones.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Split:
    """Indices into the few-shot training examples, for one seed."""

    holdout: np.ndarray  # [K * holdout] held-out examples (choose the regularisation).
    pools: list[np.ndarray]  # Per class, the shuffled indices after the held-out ones.

    def shots(self, n: int) -> np.ndarray:
        """`[K * n]` indices: the first n of each class's pool."""
        return np.concatenate([pool[:n] for pool in self.pools])


def max_shots(labels: np.ndarray, num_classes: int, holdout: int) -> int:
    """The most shots every class can give after `holdout` held-out examples (>= 0)."""
    counts = np.bincount(labels, minlength=num_classes)[:num_classes]  # [K]
    return max(int(counts.min()) - holdout, 0)


def split(labels: np.ndarray, num_classes: int, holdout: int, seed: int) -> Split:
    """Per-class shuffle of `labels` `[n]` (ints in [0, K)) with `seed`; see module doc."""
    rng = np.random.default_rng(seed)
    held, pools = [], []
    for label in range(num_classes):
        members = rng.permutation(np.flatnonzero(labels == label))
        held.append(members[:holdout])
        pools.append(members[holdout:])
    return Split(np.concatenate(held), pools)
