"""Pre-trained parameters made ready for fine-tuning: new head, optional pre-logits, resized
position embeddings, and a strict check of every other array against the model."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

from vit_jax.checkpoint import layout
from vit_jax.checkpoint.architecture import check_params, patch_stride
from vit_jax.checkpoint.errors import CheckpointError
from vit_jax.checkpoint.npz import load
from vit_jax.checkpoint.posemb import grid_shape, resize_posemb
from vit_jax.models import TOKEN_CLASSIFIERS, stack_encoder_blocks, unstack_encoder_blocks
from vit_jax.models.scan_layout import is_stacked

logger = logging.getLogger(__name__)

POSEMB = "Transformer/posembed_input/pos_embedding"


def _target_grid(
    num_tokens: int, model_config: Any, image_size: int | tuple[int, int] | None
) -> tuple[int, int]:
    """The model's patch grid: from `image_size` when given, else the square of `num_tokens`."""
    if image_size is None:
        try:
            return grid_shape(num_tokens)
        except ValueError as e:
            raise ValueError(f"{e} Pass image_size=(height, width) to load_pretrained.") from e
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    stride_h, stride_w = patch_stride(model_config)
    grid = (height // stride_h, width // stride_w)
    if grid[0] * grid[1] != num_tokens:
        raise ValueError(
            f"image_size {(height, width)} gives a {grid[0]}x{grid[1]} patch grid, but "
            f"init_params' position embeddings have {num_tokens} patch tokens."
        )
    return grid


def load_pretrained(
    *,
    pretrained_path: str | os.PathLike,
    init_params: Mapping[str, Any],
    model_config: Any,
    image_size: int | tuple[int, int] | None = None,
    report: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Parameters from `pretrained_path` adapted to the model that produced `init_params`.

    - `head/*` comes from `init_params` (the new task's classes).
    - `pre_logits/*` is dropped when `model_config.representation_size` is None, kept when
      set (taken from `init_params` if the file has none).
    - The position embeddings are resized (bilinear, `resize_posemb`) when the model's patch
      grid differs; the class-token slot is kept. `image_size=(height, width)` gives the grid;
      without it, the grid is the square one matching `init_params`.

    Every other array must match `init_params` in name and shape, else `CheckpointError`.
    `report` (e.g. `print`) receives one line per change made, besides the INFO log.
    Returns nested dicts in `init_params`' layout (stacked encoder blocks for `scan_layers`
    models): numpy arrays from the file, the head as found in `init_params`.
    """
    source = os.fspath(pretrained_path)

    def note(message: str) -> None:
        logger.info("load_pretrained: %s", message)
        if report is not None:
            report(f"Fine-tuning: {message}")

    stacked = is_stacked(init_params)
    init_params = unstack_encoder_blocks(init_params)
    params = layout.flatten(load(source))
    init = layout.flatten(init_params)

    def take_from_init(prefix: str) -> None:
        params.update({key: value for key, value in init.items() if key.startswith(prefix)})

    dropped = [key for key in params if key.startswith("head/")]
    for key in dropped:
        del params[key]
    take_from_init("head/")
    head = init.get("head/kernel")
    note(
        f"loaded {source}; head replaced by a fresh one"
        + (f" with {head.shape[-1]} classes" if head is not None else "")
        + (f" (the file's {', '.join(dropped)} dropped)." if dropped else ".")
    )

    has_pre_logits = any(key.startswith("pre_logits/") for key in params)
    if model_config.get("representation_size") is None:
        for key in [key for key in params if key.startswith("pre_logits/")]:
            note(f"dropped {key} (representation_size is None).")
            del params[key]
    elif not has_pre_logits:
        logger.warning("load_pretrained: %s has no pre_logits; using init_params'.", source)
        take_from_init("pre_logits/")

    # Resize only when both sides agree on the class token; otherwise check_params reports it.
    model_has_token = model_config.get("classifier", "token") in TOKEN_CLASSIFIERS
    if POSEMB in params and POSEMB in init and ("cls" in params) == model_has_token:
        old = params[POSEMB]
        try:
            new_grid = _target_grid(
                init[POSEMB].shape[1] - model_has_token, model_config, image_size
            )
            old_grid = grid_shape(old.shape[1] - model_has_token)
        except ValueError as e:
            raise CheckpointError(f"{source}: cannot resize the position embeddings: {e}") from e
        if old_grid != new_grid:
            params[POSEMB] = resize_posemb(old, new_grid, has_class_token=model_has_token)
            note(
                f"position embeddings resized from a {old_grid[0]}x{old_grid[1]} to a "
                f"{new_grid[0]}x{new_grid[1]} patch grid (bilinear)."
            )

    restored = layout.unflatten(params)
    check_params(restored, init_params, source=source)
    return stack_encoder_blocks(restored) if stacked else restored
