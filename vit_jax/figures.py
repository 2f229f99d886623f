"""The ViT paper's Figure 7 for any checkpoint: what the first layers learn.

    python -m vit_jax.figures ViT-B_16.npz figures/
    python -m vit_jax.figures ViT-B_16.npz figures/ --images cat.jpg dog.jpg

writes three PNGs to the output folder:

- `embedding_filters.png`: the first 28 principal components of the patch-embedding filters,
  shown as RGB patches (left panel). Hybrids embed ResNet features, not pixels, so for them
  the PNG says the panel does not apply.
- `position_embeddings.png`: for each patch, the cosine similarity of its position embedding
  with every other patch's (center panel).
- `attention_distance.png`: mean attention distance in pixels for every head against depth
  (right panel), averaged over the given images, or over random-noise images when none are
  given (the paper used natural images: pass some with --images).

From Python: `figures.figure7(params)` returns the three matplotlib Figures.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from matplotlib.figure import Figure

from vit_jax import checkpoint, errors, models
from vit_jax.cli import quiet
from vit_jax.inference import analysis, plots
from vit_jax.inference.errors import InferenceError
from vit_jax.inference.predictor import Predictor

FILENAMES = {
    "embedding_filters": "embedding_filters.png",
    "position_embeddings": "position_embeddings.png",
    "attention_distance": "attention_distance.png",
}
NUM_COMPONENTS = 28  # As in the paper.


def _filters(predictor: Predictor, suffix: str) -> Figure:
    kernel = np.asarray(predictor.params["embedding"]["kernel"])  # [P, P, C, D]
    title = f"RGB embedding filters{suffix}"
    if predictor.config.resnet is not None or kernel.shape[2] != 3:
        return plots.not_applicable(
            title,
            f"Not applicable: this hybrid model embeds {kernel.shape[0]}x{kernel.shape[1]} "
            f"patches of {kernel.shape[2]}-channel ResNet features, not RGB pixels.",
        )
    components, explained = analysis.embedding_components(kernel, NUM_COMPONENTS)
    return plots.embedding_filters(components, explained, suffix)


def _positions(predictor: Predictor, suffix: str) -> Figure:
    posemb = np.asarray(predictor.params["Transformer"]["posembed_input"]["pos_embedding"])
    similarity = analysis.position_similarity(posemb, predictor.has_class_token, predictor.grid)
    return plots.position_similarity(similarity, suffix)


def _distances(
    predictor: Predictor, images: Sequence[Any] | None, num_random: int, seed: int
) -> tuple[np.ndarray, str]:
    """Mean attention distance `[L, H]` and a note saying which images it was computed on."""
    if images is not None and len(images) > 0:
        batch = predictor.load_batch(images)
        note = f"averaged over {len(batch)} image{'s' * (len(batch) > 1)}"
    else:
        if num_random < 1:
            raise InferenceError(f"--num_random must be at least 1; got {num_random}.")
        rng = np.random.default_rng(seed)
        shape = (num_random, *predictor.image_size, 3)
        batch = rng.uniform(-1.0, 1.0, size=shape).astype(np.float32)
        note = f"averaged over {num_random} random-noise images (pass --images for real ones)"

    def per_image(params, images):  # [B, H, W, 3] -> [B, L, H]
        _, state = predictor.model.apply({"params": params}, images, mutable=["intermediates"])
        attentions = models.attention_weights(state["intermediates"])
        return analysis.mean_attention_distance(
            attentions, predictor.has_class_token, predictor.grid, predictor.stride
        )

    distances = predictor.map_batches(jax.jit(per_image), batch)  # [B, L, H]
    return distances.mean(axis=0), note


def figure7(
    params: Any,
    *,
    images: Sequence[Any] | None = None,
    num_random: int = 8,
    seed: int = 0,
    batch_size: int = 4,
    name: str | None = None,
) -> dict[str, Figure]:
    """The three panels of Figure 7 for `params`, keyed like `FILENAMES`.

    `images`: paths, URLs, PIL images or arrays for the attention distances; without them,
    `num_random` uniform-noise images drawn with `seed`.
    """
    predictor = Predictor(params, labels=None, batch_size=batch_size, source=name or "params")
    label = name or predictor.config.model_name
    suffix = f" — {label}" if label else ""
    distances, note = _distances(predictor, images, num_random, seed)
    return {
        "embedding_filters": _filters(predictor, suffix),
        "position_embeddings": _positions(predictor, suffix),
        "attention_distance": plots.attention_distance(
            distances, predictor.image_size, note, suffix
        ),
    }


def write_figures(
    checkpoint_path: str | os.PathLike, out_dir: str | os.PathLike, **kwargs: Any
) -> list[str]:
    """Loads a checkpoint, writes Figure 7's PNGs to `out_dir`; returns their paths."""
    source = os.fspath(checkpoint_path)
    params = checkpoint.load(source)
    name = os.path.basename(source.rstrip("/")).removesuffix(".npz")
    figures = figure7(params, name=name, **kwargs)
    paths = []
    for key, figure in figures.items():
        path = os.path.join(os.fspath(out_dir), FILENAMES[key])
        try:
            paths.append(plots.save_png(figure, path))
        except OSError as e:
            raise InferenceError(f"Cannot write {path}: {e}.") from None
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    quiet.for_command_line()
    parser = argparse.ArgumentParser(
        prog="python -m vit_jax.figures",
        description="The ViT paper's Figure 7 (embedding filters, position-embedding "
        "similarity, mean attention distance) for a checkpoint, as PNGs.",
    )
    parser.add_argument("checkpoint", help=".npz file: local path, gs:// or https://")
    parser.add_argument("out_dir", help="folder for the PNGs (created if missing)")
    parser.add_argument("--images", nargs="+", help="images for the attention distances")
    parser.add_argument(
        "--num_random", type=int, default=8, help="noise images to use when --images is absent"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise images")
    parser.add_argument("--batch_size", type=int, default=4, help="images per forward pass")
    args = parser.parse_args(argv)
    try:
        paths = write_figures(
            args.checkpoint,
            args.out_dir,
            images=args.images,
            num_random=args.num_random,
            seed=args.seed,
            batch_size=args.batch_size,
        )
    except (InferenceError, checkpoint.CheckpointError) as e:
        return errors.report(e)
    for path in paths:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
