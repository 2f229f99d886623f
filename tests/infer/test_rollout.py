"""Attention rollout and the Figure 7 measurements against hand-computed tiny examples."""

from __future__ import annotations

import numpy as np

from vit_jax.inference import analysis, attention_rollout, rollout_matrix

# Attention of one head over [CLS, patch 0, patch 1]; rows are queries and sum to 1.
A = np.array([[0.5, 0.3, 0.2], [0.2, 0.6, 0.2], [0.1, 0.1, 0.8]], np.float32)
UNIFORM = np.full((3, 3), 1 / 3, np.float32)


def heads(*matrices):
    return np.stack(matrices)[None]  # [B=1, H, N, N]


def test_one_layer_by_hand():
    # (A + I) / 2, CLS row over the patches: [0.75, 0.15, 0.10] -> [0.15, 0.10].
    rollout = attention_rollout([heads(A)], has_class_token=True, grid=(1, 2))
    assert rollout.shape == (1, 1, 2)
    np.testing.assert_allclose(rollout[0], [[0.15, 0.10]], atol=1e-6)


def test_two_layers_multiply_last_after_first():
    # B1 = (A + I)/2, B2 = (U + I)/2; the CLS row of B2 @ B1 is
    # 2/3 [.75, .15, .10] + 1/6 [.1, .8, .1] + 1/6 [.05, .05, .9] = [.525, .241667, .233333].
    # (B1 @ B2 would give [.541667, .241667, .216667].)
    joint = rollout_matrix([heads(A), heads(UNIFORM)])
    np.testing.assert_allclose(joint[0, 0], [0.525, 0.241667, 0.233333], atol=1e-5)
    np.testing.assert_allclose(joint.sum(-1), 1.0, atol=1e-6)  # Rows stay stochastic.
    rollout = attention_rollout([heads(A), heads(UNIFORM)], has_class_token=True, grid=(1, 2))
    np.testing.assert_allclose(rollout[0, 0], [0.241667, 0.233333], atol=1e-5)


def test_heads_are_averaged():
    eye = np.eye(3, dtype=np.float32)
    averaged = attention_rollout([heads(eye, UNIFORM)], True, (1, 2))
    single = attention_rollout([heads((eye + UNIFORM) / 2)], True, (1, 2))
    np.testing.assert_allclose(averaged, single, atol=1e-6)


def test_gap_models_use_the_mean_row():
    # (A + I)/2 = [[.8, .2], [.1, .9]]; the mean over rows is [.45, .55], summing to 1.
    gap = np.array([[0.6, 0.4], [0.2, 0.8]], np.float32)
    rollout = attention_rollout([heads(gap)], has_class_token=False, grid=(1, 2))
    np.testing.assert_allclose(rollout[0], [[0.45, 0.55]], atol=1e-6)


def test_patch_distances_and_mean_attention_distance():
    np.testing.assert_allclose(analysis.patch_distances((1, 2), (16, 16)), [[0, 16], [16, 0]])
    # Patch 0 splits its patch attention evenly (8 px on average), patch 1 attends to itself.
    weights = np.array([[0.5, 0.5, 0.0], [0.5, 0.25, 0.25], [0.0, 0.0, 1.0]], np.float32)
    distance = analysis.mean_attention_distance([heads(weights)], True, (1, 2), (16, 16))
    assert distance.shape == (1, 1, 1)  # [B, L, H]
    np.testing.assert_allclose(distance, 4.0, atol=1e-5)


def test_embedding_components_find_the_main_directions():
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.normal(size=(12, 12)))[0]  # Orthonormal columns.
    main, second = basis[:, 0], basis[:, 1]
    filters = np.outer(rng.normal(0, 10, 200), main) + np.outer(rng.normal(0, 1, 200), second)
    kernel = filters.T.reshape(2, 2, 3, 200)  # [P, P, C, D]
    components, explained = analysis.embedding_components(kernel, num=28)
    assert components.shape == (12, 2, 2, 3) and explained.shape == (12,)
    assert abs(components[0].ravel() @ main) > 0.999
    assert abs(components[1].ravel() @ second) > 0.99
    assert np.all(np.diff(explained) <= 1e-7) and explained.sum() <= 1.0 + 1e-6


def test_position_similarity():
    rng = np.random.default_rng(0)
    posemb = rng.normal(size=(1, 5, 8)).astype(np.float32)  # CLS + 2x2 patches.
    similarity = analysis.position_similarity(posemb, True, (2, 2))
    assert similarity.shape == (2, 2, 2, 2)
    flat = similarity.reshape(4, 4)
    np.testing.assert_allclose(np.diag(flat), 1.0, atol=1e-6)
    np.testing.assert_allclose(flat, flat.T, atol=1e-6)
    a, b = posemb[0, 1], posemb[0, 4]  # Patches (0, 0) and (1, 1).
    expected = a @ b / np.linalg.norm(a) / np.linalg.norm(b)
    np.testing.assert_allclose(similarity[0, 0, 1, 1], expected, atol=1e-5)
