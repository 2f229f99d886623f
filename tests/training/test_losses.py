"""The loss registry against NumPy formulas."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from vit_jax.errors import ConfigError
from vit_jax.training import losses

LOGITS = np.array([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]], np.float32)
LABELS = np.array([[1.0, 0.0, 0.0], [0.0, 0.9, 0.1]], np.float32)


def test_softmax_xent():
    log_probs = LOGITS - np.log(np.exp(LOGITS).sum(-1, keepdims=True))
    expected = -(LABELS * log_probs).sum(-1)
    got = losses.get_loss("softmax_xent")(jnp.asarray(LOGITS, jnp.bfloat16), LABELS)
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(got, expected, rtol=2e-2)  # bfloat16 logits in, float32 math.
    np.testing.assert_allclose(losses.softmax_xent(LOGITS, LABELS), expected, rtol=1e-6)


def test_sigmoid_xent_sums_over_classes():
    p = 1 / (1 + np.exp(-LOGITS))
    expected = -(LABELS * np.log(p) + (1 - LABELS) * np.log(1 - p)).sum(-1)
    np.testing.assert_allclose(losses.get_loss("sigmoid_xent")(LOGITS, LABELS), expected, rtol=1e-5)


def test_unknown_loss():
    with pytest.raises(ConfigError, match="softmax_xent"):
        losses.get_loss("hinge")
