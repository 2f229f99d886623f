"""Per-class draws: held-out examples apart from the fitted ones, nested shots, seeds."""

from __future__ import annotations

import numpy as np

from vit_jax.fewshot import sampling

LABELS = np.repeat(np.arange(3), [9, 12, 10])  # Class 0 is the smallest: 9 examples.


def test_held_out_and_shots_are_disjoint_nested_and_balanced():
    draw = sampling.split(LABELS, num_classes=3, holdout=2, seed=0)
    assert np.bincount(LABELS[draw.holdout], minlength=3).tolist() == [2, 2, 2]
    previous: set[int] = set()
    for n in (1, 3, 7):
        fit = draw.shots(n)
        assert np.bincount(LABELS[fit], minlength=3).tolist() == [n, n, n]
        assert not set(fit) & set(draw.holdout)
        assert previous <= set(fit)  # 1-shot's examples are among 3-shot's, and so on.
        previous = set(fit)


def test_seeds_draw_different_examples_reproducibly():
    first, again = (sampling.split(LABELS, 3, 2, seed=0) for _ in range(2))
    other = sampling.split(LABELS, 3, 2, seed=1)
    assert np.array_equal(first.shots(5), again.shots(5))
    assert not np.array_equal(first.shots(5), other.shots(5))


def test_max_shots_is_limited_by_the_smallest_class():
    assert sampling.max_shots(LABELS, 3, holdout=2) == 7
    assert sampling.max_shots(LABELS, 4, holdout=2) == 0  # A class with no examples.
