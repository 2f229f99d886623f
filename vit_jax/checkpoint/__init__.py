"""Published ViT checkpoints: `.npz` load/save, fine-tuning surgery, config inference.

    params = load('gs://vit_models/imagenet21k/ViT-B_16.npz')   # or a local path / https URL
    config = infer_config(params)
    params = load_pretrained(pretrained_path=path, init_params=init, model_config=config)
    save(params, 'out/ViT-B_16-finetuned.npz')

Every unusable file raises `CheckpointError` (a ValueError) naming the file and the fix.
"""

from vit_jax.checkpoint.architecture import (
    build_checked,
    check_params,
    infer_config,
    infer_image_size,
    infer_num_classes,
    patch_stride,
)
from vit_jax.checkpoint.errors import PUBLISHED_LOCATIONS, CheckpointError, UnreachableError
from vit_jax.checkpoint.npz import load, save
from vit_jax.checkpoint.posemb import resize_posemb
from vit_jax.checkpoint.pretrained import load_pretrained

__all__ = [
    "PUBLISHED_LOCATIONS",
    "CheckpointError",
    "UnreachableError",
    "build_checked",
    "check_params",
    "infer_config",
    "infer_image_size",
    "infer_num_classes",
    "load",
    "load_pretrained",
    "patch_stride",
    "resize_posemb",
    "save",
]
