"""Inference a few images at a time: the same logits as one `model.apply`, faster on CPUs.

A CPU runs a ViT forward pass fastest when one pass's activations stay in its caches. At 224
pixels a ViT-B/16 batch of 32 does not (its MLP activations alone are 77 MB), and it reaches
only ~71% of the machine's matmul peak where batches of 4-8 images reach ~88%; at 384 pixels
batch 8 drops to ~65%, batches of 1-2 images stay at ~89%. Measured on a 2-core AVX-512 VM
with a 32 MiB L3 (benchmarks/RESULTS.md); ViT-Ti/16 at batch 32 goes from 60% to 72-75%.
`micro_batched_apply` therefore runs the batch as a loop (`lax.map`) over micro-batches of
about `TOKENS_PER_MICRO_BATCH` tokens, compiling the model once.

It is for inference (no dropout, no gradients: under `jax.grad` the loop is slower, measured
0.83x for a ViT-B/16 training step at batch 8). Accelerators keep whole batches ("auto" does
not split there). With the batch split over `data_shards` devices, each micro-batch takes the
same number of images from every device, so the loop stays data-parallel.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp

# Tokens (images x tokens per image) per micro-batch on CPU: 4 images of 197 tokens (ViT at
# 224 with patch 16), 1 image of 577 (384 pixels). Best measured: 600-1600 at 224 and 384.
TOKENS_PER_MICRO_BATCH = 800

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


def micro_batch_size(tokens_per_image: int, micro_batch: MicroBatch = "auto") -> int | None:
    """Images per micro-batch, or None for whole batches.

    "auto": on CPU, `TOKENS_PER_MICRO_BATCH // tokens_per_image` images (at least 1);
    elsewhere None. An int is used as given; None or 0 turns micro-batching off.
    """
    if micro_batch == "auto":
        if jax.default_backend() != "cpu":
            return None
        return max(1, TOKENS_PER_MICRO_BATCH // max(tokens_per_image, 1))
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
    size = micro_batch_size(num_tokens(params), micro_batch)
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
