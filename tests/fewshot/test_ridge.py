"""The closed-form ridge fit against NumPy, and the rule that picks its strength."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from vit_jax.fewshot import ridge

NUM_CLASSES = 4
L2S = (0.1, 1.0, 30.0)


def numpy_ridge(x: np.ndarray, y: np.ndarray, l2: float) -> tuple[np.ndarray, np.ndarray]:
    """argmin |x w + b - y|^2 + l2 |w|^2 by the normal equations, in float64."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    x_mean, y_mean = x.mean(0), y.mean(0)
    xc, yc = x - x_mean, y - y_mean
    w = np.linalg.solve(xc.T @ xc + l2 * np.eye(x.shape[1]), xc.T @ yc)
    return w, y_mean - x_mean @ w


def fixed_problem(n: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % NUM_CLASSES
    x = rng.normal(size=(n, d)).astype(np.float32) + labels[:, None]  # Classes separable-ish.
    return x, labels


@pytest.mark.parametrize("n, d", [(40, 8), (6, 24)], ids=["primal", "dual"])
def test_fit_equals_numpy_solve(n, d):
    x, labels = fixed_problem(n, d)
    y = np.asarray(ridge.targets(jnp.asarray(labels), NUM_CLASSES))  # [n, K]
    assert set(np.unique(y)) == {-1.0, 1.0} and (y.sum(1) == 2 - NUM_CLASSES).all()
    weights, biases = ridge.fit(jnp.asarray(x), jnp.asarray(y), jnp.asarray(L2S))
    assert weights.shape == (len(L2S), d, NUM_CLASSES) and biases.shape == (len(L2S), NUM_CLASSES)
    for i, l2 in enumerate(L2S):
        w, b = numpy_ridge(x, y, l2)
        np.testing.assert_allclose(weights[i], w, atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(biases[i], b, atol=1e-5, rtol=1e-5)


def hidden_signal_problem(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The class shows only in the difference of two large, equal noise dimensions: weak
    regularisation finds it, strong regularisation (towards class means) does not."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % NUM_CLASSES
    noise = 10 * rng.normal(size=(n, NUM_CLASSES))
    signal = np.eye(NUM_CLASSES)[labels] + 0.3 * rng.normal(size=(n, NUM_CLASSES))
    return np.concatenate([noise + signal, noise], 1).astype(np.float32), labels


@pytest.mark.parametrize(
    "problem, best",
    [(lambda: fixed_problem(96, 6, seed=1), "ties"), (lambda: hidden_signal_problem(96), 0)],
    ids=["ties-go-to-the-largest", "weak-regularisation-wins"],
)
def test_strength_is_chosen_on_held_out_examples_only(problem, best):
    """The chosen strength is the largest of those with the best held-out accuracy, and the
    reported accuracy is that fit's on the test examples; test labels do not change it."""
    x, labels = problem()
    fit, val, test = slice(0, 32), slice(32, 64), slice(64, 96)
    grid = (1e-2, 1.0, 1e2, 1e4, 1e6)
    accuracy, chosen = ridge.evaluate(
        x[fit], labels[fit], x[val], labels[val], x[test], labels[test], NUM_CLASSES, grid
    )

    mean, std = x[fit].mean(0), np.maximum(x[fit].std(0), 1e-6)
    standard = lambda part: (part - mean) / std
    y = 2.0 * np.eye(NUM_CLASSES)[labels[fit]] - 1.0
    fits = [numpy_ridge(standard(x[fit]), y, l2) for l2 in grid]
    score = lambda wb, part: np.mean((standard(x[part]) @ wb[0] + wb[1]).argmax(1) == labels[part])
    held_out = np.array([score(wb, val) for wb in fits])
    expected = max(i for i in range(len(grid)) if held_out[i] == held_out.max())
    if best != "ties":
        assert expected == best and held_out[best] > np.delete(held_out, best).max()
    else:
        assert (held_out == held_out.max()).sum() > 1
    assert chosen == pytest.approx(grid[expected])
    assert accuracy == pytest.approx(score(fits[expected], test))

    shuffled = np.random.default_rng(0).permutation(labels[test])
    _, chosen_again = ridge.evaluate(
        x[fit], labels[fit], x[val], labels[val], x[test], shuffled, NUM_CLASSES, grid
    )
    assert chosen_again == chosen
