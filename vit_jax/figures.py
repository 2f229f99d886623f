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

From Python: `figures.figure7(params)` returns the three matplotlib Figures, and
`figures.figure7_data(params)` the arrays they plot.
"""

from __future__ import annotations

import argparse
import dataclasses
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


@dataclasses.dataclass(frozen=True)
class Figure7Data:
    """What Figure 7's panels plot, for one model."""

    label: str | None  # The model's name in the titles.
    image_size: tuple[int, int]  # (H, W) of the model's input.
    # Left: the first principal components of the RGB embedding filters [k, P, P, 3] and the
    # fraction of the filters' variance along each [k]; None for hybrids, with the reason.
    components: np.ndarray | None
    explained: np.ndarray | None
    not_applicable: str
    # Center: cosine similarity of the patches' position embeddings [gh, gw, gh, gw].
    similarity: np.ndarray
    # Right: mean attention distance in pixels [L, H], and which images it averages over.
    distances: np.ndarray
    note: str


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


def figure7_data(
    params: Any,
    *,
    images: Sequence[Any] | None = None,
    num_random: int = 8,
    seed: int = 0,
    batch_size: int = 4,
    name: str | None = None,
) -> Figure7Data:
    """The numbers behind Figure 7 for `params`.

    `images`: paths, URLs, PIL images or arrays for the attention distances; without them,
    `num_random` uniform-noise images drawn with `seed`.
    """
    predictor = Predictor(params, labels=None, batch_size=batch_size, source=name or "params")
    distances, note = _distances(predictor, images, num_random, seed)
    kernel = np.asarray(predictor.params["embedding"]["kernel"])  # [P, P, C, D]
    components = explained = None
    not_applicable = ""
    if predictor.config.resnet is not None or kernel.shape[2] != 3:
        not_applicable = (
            f"Not applicable: this hybrid model embeds {kernel.shape[0]}x{kernel.shape[1]} "
            f"patches of {kernel.shape[2]}-channel ResNet features, not RGB pixels."
        )
    else:
        components, explained = analysis.embedding_components(kernel, NUM_COMPONENTS)
    posemb = np.asarray(predictor.params["Transformer"]["posembed_input"]["pos_embedding"])
    return Figure7Data(
        label=name or predictor.config.model_name,
        image_size=predictor.image_size,
        components=components,
        explained=explained,
        not_applicable=not_applicable,
        similarity=analysis.position_similarity(posemb, predictor.has_class_token, predictor.grid),
        distances=distances,
        note=note,
    )


def figure7(params: Any, **kwargs: Any) -> dict[str, Figure]:
    """The three panels of Figure 7 for `params`, keyed like `FILENAMES`; the keyword
    arguments are `figure7_data`'s (images, num_random, seed, batch_size, name)."""
    data = figure7_data(params, **kwargs)
    suffix = f" — {data.label}" if data.label else ""
    if data.components is None:
        filters = plots.not_applicable(f"RGB embedding filters{suffix}", data.not_applicable)
    else:
        filters = plots.embedding_filters(data.components, data.explained, suffix)
    return {
        "embedding_filters": filters,
        "position_embeddings": plots.position_similarity(data.similarity, suffix),
        "attention_distance": plots.attention_distance(
            data.distances, data.image_size, data.note, suffix
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
    # Every argument is a parameter of write_figures (or figure7) under the same name.
    parser.add_argument(
        "checkpoint_path", metavar="checkpoint", help=".npz file: local path, gs:// or https://"
    )
    parser.add_argument("out_dir", help="folder for the PNGs (created if missing)")
    parser.add_argument("--images", nargs="+", help="images for the attention distances")
    parser.add_argument(
        "--num_random", type=int, default=8, help="noise images to use when --images is absent"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise images")
    parser.add_argument("--batch_size", type=int, default=4, help="images per forward pass")
    args = parser.parse_args(argv)
    try:
        paths = write_figures(**vars(args))
    except (InferenceError, checkpoint.CheckpointError) as e:
        return errors.report(e)
    for path in paths:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
