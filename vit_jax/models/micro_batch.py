"""Inference a few images at a time: the same logits as one `model.apply`, faster on CPUs.

A CPU runs a ViT forward pass fastest when one pass's activations stay in its caches; a whole
ViT-B/16 batch of 32 at 224 pixels does not. `micro_batched_apply` therefore runs the batch as
a loop (`lax.map`) over micro-batches, compiling the model once. How many tokens a micro-batch
holds on each backend ("auto": about 800 on CPU, 3200 with oneDNN's, OpenBLAS's or MKL's
matmuls, whole batches on GPU and TPU), and the measurements behind it, are in
`vit_jax.models.backend_tuning`.

It is for inference (no dropout, no gradients: under `jax.grad` the loop is slower). With the
batch split over `data_shards` devices, each micro-batch takes the same number of images from
every device, so the loop stays data-parallel.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp

from vit_jax.models import backend_tuning
from vit_jax.models.backend_tuning import ResolvedLibrary
from vit_jax.models.matmul import resolve_library

MicroBatch = int | Literal["auto"] | None


def num_tokens(params: Mapping[str, Any]) -> int:
    """Tokens per image (class token included) of the model these parameters belong to."""
    try:
        return int(params["Transformer"]["posembed_input"]["pos_embedding"].shape[1])
    except (KeyError, TypeError, IndexError, AttributeError):
        raise ValueError(
            "micro_batched_apply takes the model's parameter tree (the 'params' collection, "
            "with Transformer/posembed_input/pos_embedding), not the variables dict around it."
        ) from None


def micro_batch_size(
    tokens_per_image: int,
    micro_batch: MicroBatch = "auto",
    matmul_library: ResolvedLibrary = "xla",
) -> int | None:
    """Images per micro-batch, or None for whole batches.

    "auto": the default backend's tokens per micro-batch for the model's resolved
    `matmul_library`, divided by `tokens_per_image` (at least 1 image), or None where it runs
    whole batches (`backend_tuning`, item 2: on CPU 800 tokens, 3200 with a custom call's
    matmuls; whole batches on GPU and TPU). An int is used as given; None or 0 turns
    micro-batching off.
    """
    if micro_batch == "auto":
        choices = backend_tuning.for_default_backend()
        tokens = choices.inference_micro_batch_tokens(matmul_library)
        if tokens is None:
            return None
        return max(1, tokens // max(tokens_per_image, 1))
    if micro_batch is None or micro_batch == 0:
        return None
    if not isinstance(micro_batch, int) or micro_batch < 0:
        raise ValueError(
            f"micro_batch must be 'auto', None or a positive number of images; got {micro_batch!r}."
        )
    return micro_batch


def _num_chunks(batch: int, data_shards: int, size: int) -> int:
    """Micro-batches per pass: divides every shard's batch, each about `size` images per shard."""
    if batch % data_shards:
        raise ValueError(
            f"A batch of {batch} images cannot be split evenly over {data_shards} data shards."
        )
    per_shard = batch // data_shards
    chunks = max(per_shard // size, 1)
    while per_shard % chunks:
        chunks -= 1
    return chunks


def micro_batched_apply(
    model: nn.Module,
    params: Any,
    images: jax.Array,
    *,
    micro_batch: MicroBatch = "auto",
    data_shards: int = 1,
) -> jax.Array:
    """`model.apply({'params': params}, images)` (inference) in micro-batches; see the module.

    Shapes: images [B, H, W, 3] -> logits [B, C] (or the model's output per image).
    `data_shards`: devices the batch is split over (their count along the batch dimension).
    """
    apply = lambda x: model.apply({"params": params}, x, train=False)
    library = resolve_library(
        getattr(model, "matmul_library", "xla"), getattr(model, "dtype", jnp.float32)
    )
    size = micro_batch_size(num_tokens(params), micro_batch, library)
    batch = images.shape[0]
    chunks = 1 if size is None else _num_chunks(batch, data_shards, size)
    if chunks == 1:
        return apply(images)
    # Micro-batch j holds images j, j + chunks, j + 2 * chunks, ...: with the batch split
    # into contiguous per-device blocks, each micro-batch takes batch / chunks / data_shards
    # images from every device.
    strided = jnp.swapaxes(images.reshape(batch // chunks, chunks, *images.shape[1:]), 0, 1)
    outputs = jax.lax.map(apply, strided)  # [chunks, B / chunks, ...]
    return jnp.swapaxes(outputs, 0, 1).reshape(batch, *outputs.shape[2:])
