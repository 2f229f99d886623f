"""Matplotlib figures: attention-rollout overlays and the three panels of the paper's Figure 7.

Every function returns a `matplotlib.figure.Figure` (shown inline in notebooks) built with the
object-oriented API, so no global pyplot state is touched; `save_png` writes one.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from vit_jax.inference.images import to_display

FIGURE_DPI = 100


def save_png(figure: Figure, path: str | os.PathLike) -> str:
    """Writes `figure` to `path` as PNG (creating the folder) and returns the path."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, format="png", dpi=FIGURE_DPI, bbox_inches="tight")
    return path


def attention_overlay(
    images: Sequence[np.ndarray],
    rollouts: Sequence[np.ndarray],
    titles: Sequence[str] | None = None,
) -> Figure:
    """One row per image: the model input, and the rollout map over it (as in Figure 6).

    `images` are model inputs `[H, W, 3]` in [-1, 1]; `rollouts` maps `[gh, gw]`, each
    scaled to its own maximum and drawn bilinearly upsampled to the image.
    """
    count = len(images)
    figure = Figure(figsize=(8, 4 * count))
    axes = figure.subplots(count, 2, squeeze=False)
    for row, (image, rollout) in enumerate(zip(images, rollouts)):
        height, width = image.shape[:2]
        shown = np.asarray(rollout, np.float32)
        shown = shown / max(float(shown.max()), np.finfo(np.float32).tiny)
        name = titles[row] if titles else f"image {row}"
        left, right = axes[row]
        extent = (0, width, height, 0)  # Same pixel frame for the image and the map.
        left.imshow(to_display(image), extent=extent)
        left.set_title(f"{name}\ninput ({width}x{height})")
        right.imshow(to_display(image), extent=extent)
        heat = right.imshow(
            shown,
            cmap="jet",
            alpha=0.5,
            vmin=0.0,
            vmax=1.0,
            extent=extent,
            interpolation="bilinear",
        )
        right.set_title(f"{name}\nattention rollout ({shown.shape[0]}x{shown.shape[1]} patches)")
        figure.colorbar(heat, ax=right, fraction=0.046, pad=0.04, label="relative attention")
        for ax in (left, right):
            ax.set_xticks([])
            ax.set_yticks([])
    figure.tight_layout()
    return figure


def _unit_range(x: np.ndarray) -> np.ndarray:
    low, high = float(x.min()), float(x.max())
    return (x - low) / (high - low) if high > low else np.full_like(x, 0.5)


def embedding_filters(
    components: np.ndarray, explained: np.ndarray, title_suffix: str = ""
) -> Figure:
    """Figure 7 (left): principal components `[k, P, P, 3]` of the RGB embedding filters."""
    count = components.shape[0]
    cols = min(7, count)
    rows = -(-count // cols)
    figure = Figure(figsize=(1.3 * cols, 1.4 * rows + 0.9))
    axes = figure.subplots(rows, cols, squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= count:
            ax.set_axis_off()
            continue
        ax.imshow(_unit_range(components[i]), interpolation="nearest")
        ax.set_title(f"PC {i + 1} ({100 * explained[i]:.1f}%)", fontsize=7)
    patch = components.shape[1]
    figure.suptitle(
        f"RGB embedding filters: first {count} principal components\n"
        f"({patch}x{patch} pixels each, % of variance across filters){title_suffix}"
    )
    figure.tight_layout()
    return figure


def not_applicable(title: str, reason: str) -> Figure:
    """A placeholder panel explaining why a plot does not apply to this model."""
    figure = Figure(figsize=(6, 2.5))
    ax = figure.subplots()
    ax.set_axis_off()
    ax.set_title(title)
    ax.text(0.5, 0.5, reason, ha="center", va="center", wrap=True, transform=ax.transAxes)
    return figure


def position_similarity(similarity: np.ndarray, title_suffix: str = "") -> Figure:
    """Figure 7 (center): for each patch, its position embedding's cosine similarity with all.

    `similarity` is `[gh, gw, gh, gw]`; tile (i, j) of the mosaic is the map for the patch
    in row i, column j.
    """
    grid_h, grid_w = similarity.shape[:2]
    gap = 1  # Blank pixels between tiles.
    tile_h, tile_w = grid_h + gap, grid_w + gap
    mosaic = np.full((grid_h * tile_h - gap, grid_w * tile_w - gap), np.nan, np.float32)
    for i in range(grid_h):
        for j in range(grid_w):
            mosaic[i * tile_h : i * tile_h + grid_h, j * tile_w : j * tile_w + grid_w] = similarity[
                i, j
            ]
    # At least one output pixel per mosaic pixel, so no tile row is dropped when drawn.
    side = max(6.5, 1.2 * mosaic.shape[0] / FIGURE_DPI + 1.5)
    figure = Figure(figsize=(side + 1.0, side))
    ax = figure.subplots()
    image = ax.imshow(mosaic, cmap="viridis", vmin=-1.0, vmax=1.0, interpolation="nearest")
    step = max(1, grid_w // 8)
    centres_w = [j * tile_w + (grid_w - 1) / 2 for j in range(0, grid_w, step)]
    centres_h = [i * tile_h + (grid_h - 1) / 2 for i in range(0, grid_h, max(1, grid_h // 8))]
    ax.set_xticks(centres_w, [str(j + 1) for j in range(0, grid_w, step)])
    ax.set_yticks(centres_h, [str(i + 1) for i in range(0, grid_h, max(1, grid_h // 8))])
    ax.set_xlabel("Input patch column")
    ax.set_ylabel("Input patch row")
    ax.set_title(f"Position embedding similarity ({grid_h}x{grid_w} patches){title_suffix}")
    figure.colorbar(image, ax=ax, label="Cosine similarity")
    figure.tight_layout()
    return figure


def attention_distance(
    distances: np.ndarray, image_size: tuple[int, int], note: str, title_suffix: str = ""
) -> Figure:
    """Figure 7 (right): mean attention distance `[L, H]` (pixels) per head against depth."""
    layers, heads = distances.shape
    depth = np.arange(1, layers + 1)
    figure = Figure(figsize=(7, 5))
    ax = figure.subplots()
    colors = [f"C{h % 10}" for h in range(heads)]
    for head in range(heads):
        label = f"Head {head + 1}" if heads <= 16 else None
        ax.scatter(depth, distances[:, head], s=18, color=colors[head], label=label)
    ax.set_xlabel("Network depth (layer)")
    ax.set_ylabel("Mean attention distance (pixels)")
    ax.set_xticks(depth if layers <= 32 else depth[:: max(1, layers // 16)])
    ax.set_xlim(0.5, layers + 0.5)
    ax.set_ylim(0, max(float(np.max(distances)) * 1.1, 1.0))
    height, width = image_size
    ax.set_title(
        f"Mean attention distance per head{title_suffix}\n{note} ({width}x{height} inputs)",
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    if heads <= 16:
        ax.legend(fontsize=7, ncol=2, loc="lower right")
    figure.tight_layout()
    return figure
