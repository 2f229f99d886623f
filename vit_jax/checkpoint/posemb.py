"""Resizing learned position embeddings to a new patch grid (fine-tuning at another resolution).

The one implementation in the project; `load_pretrained` (checkpoint/pretrained.py) calls
`resize_posemb` for the trainer and the notebooks. It is the original code's resize,
`scipy.ndimage.zoom(grid, zoom, order=1)` (bilinear, corners aligned: output index i reads
input coordinate i * (n_in - 1) / (n_out - 1)), written out in numpy rather than called:
zoom's default `mode='constant'` turns the last row and column to zeros when rounding puts
their coordinate a hair past the edge (32 -> 16 patches, for one), and clipping here does not.
Elsewhere the two agree to a float32 ulp (tests/checkpoint/test_posemb.py).
"""

from __future__ import annotations

import math

import numpy as np


def _linear_resize(x: np.ndarray, size: int, axis: int) -> np.ndarray:
    """Linear interpolation of `x` along `axis` to `size` samples, end points aligned."""
    n = x.shape[axis]
    step = (n - 1) / (size - 1) if size > 1 else 0.0
    coords = np.arange(size) * step  # [size], input coordinates in [0, n - 1]
    lower = np.clip(np.floor(coords).astype(np.int64), 0, n - 1)
    upper = np.minimum(lower + 1, n - 1)
    frac_shape = [1] * x.ndim
    frac_shape[axis] = size
    frac = (coords - lower).reshape(frac_shape)
    return np.take(x, lower, axis=axis) * (1.0 - frac) + np.take(x, upper, axis=axis) * frac


def grid_shape(num_tokens: int) -> tuple[int, int]:
    """The square grid `(g, g)` of `num_tokens` patch tokens; ValueError if not square."""
    side = math.isqrt(num_tokens)
    if side * side != num_tokens:
        raise ValueError(
            f"{num_tokens} patch tokens do not form a square grid, so the grid shape is unknown. "
            "Stored position embeddings come from square images; check has_class_token."
        )
    return side, side


def resize_posemb(
    posemb: np.ndarray, new_grid: tuple[int, int], has_class_token: bool
) -> np.ndarray:
    """Position embeddings `[1, c + g*g, D]` -> `[1, c + gh*gw, D]`, c = 1 with a class token.

    The old grid is square (inferred from the token count); `new_grid = (gh, gw)` may be
    non-square. The class-token slot is copied unchanged. Interpolation runs in float64 and
    the result has the input's dtype.
    """
    posemb = np.asarray(posemb)
    if posemb.ndim != 3 or posemb.shape[0] != 1:
        raise ValueError(f"Expected position embeddings [1, N, D]; got {posemb.shape}.")
    new_h, new_w = (int(size) for size in new_grid)
    if new_h < 1 or new_w < 1:
        raise ValueError(f"new_grid must be positive; got {tuple(new_grid)}.")
    num_extra = 1 if has_class_token else 0
    extra, tokens = posemb[:, :num_extra], posemb[0, num_extra:]  # [1, c, D], [N - c, D]
    old_h, old_w = grid_shape(tokens.shape[0])
    if (old_h, old_w) == (new_h, new_w):
        return posemb.copy()
    grid = tokens.reshape(old_h, old_w, -1).astype(np.float64)  # [g, g, D]
    grid = _linear_resize(_linear_resize(grid, new_h, axis=0), new_w, axis=1)  # [gh, gw, D]
    grid = grid.reshape(1, new_h * new_w, -1).astype(posemb.dtype)  # [1, gh*gw, D]
    return np.concatenate([extra, grid], axis=1)
