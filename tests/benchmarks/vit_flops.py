"""FLOPs of a plain ViT counted by hand, to check the FLOPs the benchmarks take from XLA."""

from __future__ import annotations

from vit_jax import models


def forward_matmul_flops(name: str, image_size: int, num_classes: int = 1000) -> int:
    """2 x the multiply-adds of one image's forward matmuls: the patch embedding; per layer the
    q, k, v and output projections, attention scores and weighted sums, and the MLP; the head.
    (XLA also counts element-wise work, so its figure is somewhat larger. The model's last
    block computes the class token alone, so XLA's count is also smaller by that block's
    other tokens: ViT-B/16 at 224 px 7%; the tests' tolerances cover both.)"""
    config = models.get_config(name)
    width, mlp = config.hidden_size, config.transformer.mlp_dim
    patch_h, patch_w = config.patches.size
    patches = (image_size // patch_h) * (image_size // patch_w)
    tokens = patches + 1  # The class token.
    per_layer = 4 * tokens * width * width + 2 * tokens * width * mlp + 2 * tokens * tokens * width
    embedding = patches * patch_h * patch_w * 3 * width
    return 2 * (embedding + config.transformer.num_layers * per_layer + width * num_classes)
