"""What the paper's Figure 7 measures, from parameters and attention weights (numpy/jax math).

- `embedding_components`: principal components of the patch-embedding filters (left panel).
- `position_similarity`: cosine similarity between the position embeddings of all patches
  (center panel).
- `mean_attention_distance`: per layer and head, the average image-space distance between
  a query patch and the patches it attends to (right panel).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np


def embedding_components(kernel: np.ndarray, num: int = 28) -> tuple[np.ndarray, np.ndarray]:
    """Embedding kernel `[P, P, C, D]` -> (components `[k, P, P, C]`, explained variance `[k]`).

    The D filters are the samples, each a `P*P*C` vector; PCA is an SVD of the centred
    `[D, P*P*C]` matrix. `k = min(num, D, P*P*C)`; each component has unit norm and an
    arbitrary sign. Explained variance is a fraction of the total.
    """
    kernel = np.asarray(kernel, np.float64)
    if kernel.ndim != 4:
        raise ValueError(f"Expected an embedding kernel [P, P, C, D]; got {kernel.shape}.")
    patch_h, patch_w, channels, width = kernel.shape
    filters = kernel.reshape(-1, width).T  # [D, P*P*C]
    filters = filters - filters.mean(axis=0, keepdims=True)
    _, singular, basis = np.linalg.svd(filters, full_matrices=False)  # basis: [r, P*P*C]
    variance = singular**2
    ratio = variance / max(variance.sum(), np.finfo(np.float64).tiny)
    count = min(num, basis.shape[0])
    components = basis[:count].reshape(count, patch_h, patch_w, channels)
    return components.astype(np.float32), ratio[:count].astype(np.float32)


def position_similarity(
    posemb: np.ndarray, has_class_token: bool, grid: tuple[int, int]
) -> np.ndarray:
    """Position embeddings `[1, N, D]` -> cosine similarities `[gh, gw, gh, gw]`.

    Entry `[i, j, k, l]` compares the patch at row i, column j with the one at row k, column l.
    The class token's embedding is left out.
    """
    posemb = np.asarray(posemb, np.float64)[0, 1 if has_class_token else 0 :]  # [gh*gw, D]
    grid_h, grid_w = grid
    if posemb.shape[0] != grid_h * grid_w:
        raise ValueError(f"{posemb.shape[0]} position embeddings do not fill {grid_h}x{grid_w}.")
    norms = np.linalg.norm(posemb, axis=-1, keepdims=True)
    unit = posemb / np.maximum(norms, np.finfo(np.float64).tiny)
    similarity = unit @ unit.T  # [gh*gw, gh*gw]
    return similarity.reshape(grid_h, grid_w, grid_h, grid_w).astype(np.float32)


def patch_distances(grid: tuple[int, int], stride: tuple[int, int]) -> np.ndarray:
    """Euclidean distance in input pixels between patch centres, `[gh*gw, gh*gw]`."""
    grid_h, grid_w = grid
    rows, cols = np.meshgrid(np.arange(grid_h), np.arange(grid_w), indexing="ij")
    centres = np.stack([rows.ravel() * stride[0], cols.ravel() * stride[1]], -1)  # [N, 2]
    return np.linalg.norm(centres[:, None, :] - centres[None, :, :], axis=-1).astype(np.float32)


def mean_attention_distance(
    attentions: Sequence[jax.Array],
    has_class_token: bool,
    grid: tuple[int, int],
    stride: tuple[int, int],
) -> jax.Array:
    """Per-layer attention `[L] x [B, H, N, N]` -> mean attention distance in pixels `[B, L, H]`.

    For each query patch, the distance to every key patch weighted by the attention paid to
    it, averaged over query patches (per image; Figure 7 averages over images too). The class
    token is left out as query and as key, and each query's attention to the patches is
    renormalised to sum to 1.
    """
    distances = jnp.asarray(patch_distances(grid, stride))  # [N', N']
    skip = 1 if has_class_token else 0
    per_layer = []
    for weights in attentions:
        patches = jnp.asarray(weights, jnp.float32)[:, :, skip:, skip:]  # [B, H, N', N']
        patches = patches / jnp.sum(patches, axis=-1, keepdims=True)
        per_query = jnp.einsum("bhqk,qk->bhq", patches, distances)  # [B, H, N']
        per_layer.append(jnp.mean(per_query, axis=-1))  # [B, H]
    return jnp.stack(per_layer, axis=1)  # [B, L, H]
