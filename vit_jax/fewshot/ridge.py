"""Closed-form regularised least squares from frozen features to {-1, 1}^K targets, in JAX.

The ViT paper (Section 4.1, "Metrics") scores a representation by the accuracy of this linear
map fitted on a few labelled images per class. Features are standardised with the statistics
of the fitting set, so that one fixed grid of regularisation strengths suits every model;
the bias is left unregularised (targets and features are centred before the solve).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

# Ridge strengths tried for every (dataset, shots, seed): 10^-2 ... 10^5, half-decade steps.
L2_GRID: tuple[float, ...] = tuple(float(10.0**e) for e in np.arange(-2.0, 5.01, 0.5))
_STD_FLOOR = 1e-6  # Dimensions that are constant over the fitting set are not scaled up.


def targets(labels: jax.Array, num_classes: int) -> jax.Array:
    """Integer labels `[n]` -> `[n, K]` with +1 for the class and -1 elsewhere."""
    return 2.0 * jax.nn.one_hot(labels, num_classes, dtype=jnp.float32) - 1.0


def standardise(fit: jax.Array, *others: jax.Array) -> tuple[jax.Array, ...]:
    """Zero mean, unit variance per dimension over `fit` `[n, d]`; `others` scaled alike."""
    mean = jnp.mean(fit, axis=0)  # [d]
    std = jnp.maximum(jnp.std(fit, axis=0), _STD_FLOOR)  # [d]
    return tuple((x - mean) / std for x in (fit, *others))


def fit(features: jax.Array, labels_pm1: jax.Array, l2: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Ridge weights for each strength in `l2`: `([L, d, K], [L, K])` (weights, biases).

    Minimises |X w + b - Y|^2 + l2 |w|^2 over (w, b), for features X `[n, d]` and targets
    Y `[n, K]`. Centring X and Y removes b from the problem; w solves the d x d system
    (X^T X + l2 I) w = X^T Y, or, with fewer examples than dimensions, the equivalent n x n
    system w = X^T (X X^T + l2 I)^-1 Y (the cheaper one is used).
    """
    x = features.astype(jnp.float32)
    y = labels_pm1.astype(jnp.float32)
    x_mean, y_mean = jnp.mean(x, axis=0), jnp.mean(y, axis=0)  # [d], [K]
    xc, yc = x - x_mean, y - y_mean  # [n, d], [n, K]
    n, d = xc.shape
    l2 = jnp.asarray(l2, jnp.float32)  # [L]
    hi = jax.lax.Precision.HIGHEST  # Full float32 matmuls also on TPUs.

    if n >= d:
        gram = jnp.matmul(xc.T, xc, precision=hi)  # [d, d]
        rhs = jnp.matmul(xc.T, yc, precision=hi)  # [d, K]
        solve = lambda reg: jnp.linalg.solve(gram + reg * jnp.eye(d), rhs)  # [d, K]
    else:
        gram = jnp.matmul(xc, xc.T, precision=hi)  # [n, n]
        solve = lambda reg: jnp.matmul(
            xc.T, jnp.linalg.solve(gram + reg * jnp.eye(n), yc), precision=hi
        )  # [d, K]
    weights = jax.vmap(solve)(l2)  # [L, d, K]
    biases = y_mean - jnp.einsum("d,ldk->lk", x_mean, weights, precision=hi)  # [L, K]
    return weights, biases


def accuracies(
    weights: jax.Array, biases: jax.Array, features: jax.Array, labels: jax.Array
) -> jax.Array:
    """Top-1 accuracy `[L]` of each of the L fitted maps on features `[m, d]`, labels `[m]`."""
    scores = jnp.einsum("md,ldk->lmk", features, weights, precision=jax.lax.Precision.HIGHEST)
    predictions = jnp.argmax(scores + biases[:, None, :], axis=-1)  # [L, m]
    return jnp.mean(predictions == labels[None, :], axis=-1)


@jax.jit
def _evaluate(fit_x, fit_y, val_x, val_y, test_x, test_y, l2):
    fit_x, val_x, test_x = standardise(fit_x, val_x, test_x)
    weights, biases = fit(fit_x, fit_y, l2)
    val_acc = accuracies(weights, biases, val_x, val_y)  # [L]
    # The strongest regularisation among the best on the held-out examples (ties -> simpler).
    best = (l2.shape[0] - 1) - jnp.argmax(val_acc[::-1])
    test_acc = accuracies(weights[best][None], biases[best][None], test_x, test_y)[0]
    return test_acc, l2[best]


def evaluate(
    fit_features: np.ndarray,
    fit_labels: np.ndarray,
    val_features: np.ndarray,
    val_labels: np.ndarray,
    test_features: np.ndarray,
    test_labels: np.ndarray,
    num_classes: int,
    l2_grid: tuple[float, ...] = L2_GRID,
) -> tuple[float, float]:
    """`(test accuracy, chosen l2)` of the ridge map fitted on `fit_*` `[n, d]`, `[n]`.

    Rule for the regularisation: every strength of `l2_grid` is fitted on the fitting
    examples and scored on the held-out training examples `val_*`; the best held-out
    accuracy wins, ties going to the larger strength. Test examples play no part in it.
    """
    test_acc, l2 = _evaluate(
        jnp.asarray(fit_features, jnp.float32),
        targets(jnp.asarray(fit_labels), num_classes),
        jnp.asarray(val_features, jnp.float32),
        jnp.asarray(val_labels),
        jnp.asarray(test_features, jnp.float32),
        jnp.asarray(test_labels),
        jnp.asarray(l2_grid, jnp.float32),
    )
    return float(test_acc), float(l2)
