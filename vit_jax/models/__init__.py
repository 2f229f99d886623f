"""ViT and hybrid ViT models with the published parameter layout."""

from vit_jax.models.micro_batch import micro_batch_size, micro_batched_apply
from vit_jax.models.registry import (
    MODEL_NAMES,
    VARIANTS,
    WIDTHS,
    build_model,
    get_config,
    get_model,
    resolve_name,
)
from vit_jax.models.scan_layout import is_stacked, stack_encoder_blocks, unstack_encoder_blocks
from vit_jax.models.vit import (
    CLASSIFIERS,
    TOKEN_CLASSIFIERS,
    VisionTransformer,
    attention_weights,
)

__all__ = [
    "CLASSIFIERS",
    "MODEL_NAMES",
    "TOKEN_CLASSIFIERS",
    "VARIANTS",
    "WIDTHS",
    "VisionTransformer",
    "attention_weights",
    "build_model",
    "get_config",
    "get_model",
    "is_stacked",
    "micro_batch_size",
    "micro_batched_apply",
    "resolve_name",
    "stack_encoder_blocks",
    "unstack_encoder_blocks",
]
