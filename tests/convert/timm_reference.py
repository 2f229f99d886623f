"""An independent PyTorch forward pass over a timm ViT state dict (timm itself needs torchvision).

Written from timm's module structure (vision_transformer.py, resnetv2.py, layers/std_conv.py):
fused `qkv` Linear split as `[3, heads, head_dim]`, pre-LN blocks, final `norm`, class-token or
average pooling; for hybrids a `ResNetV2` (non-pre-activation `Bottleneck`s, `StdConv2dSame`,
`GroupNormAct`, TF-"same" max-pool). `timm_numerics=True` uses timm's hybrid epsilons
(weight standardisation sqrt(var + 1e-8), GroupNorm 1e-5); False uses the published ones
((std + 1e-5), 1e-6), to check the layout exactly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LAYER_NORM_EPS = 1e-6


def _pad_same(x: torch.Tensor, kernel: int, stride: int, value: float = 0.0) -> torch.Tensor:
    """TensorFlow 'SAME' padding: the odd pixel goes bottom/right."""
    pads = []
    for size in (x.shape[-1], x.shape[-2]):  # F.pad wants (left, right, top, bottom).
        total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads, value=value)


def _std_conv(x, weight, stride, timm_numerics):
    mean = weight.mean(dim=(1, 2, 3), keepdim=True)
    if timm_numerics:  # F.batch_norm over the flattened kernel: biased variance, eps 1e-8.
        var = weight.var(dim=(1, 2, 3), unbiased=False, keepdim=True)
        weight = (weight - mean) / torch.sqrt(var + 1e-8)
    else:
        std = weight.std(dim=(1, 2, 3), unbiased=False, keepdim=True)
        weight = (weight - mean) / (std + 1e-5)
    return F.conv2d(_pad_same(x, weight.shape[-1], stride), weight, stride=stride)


def _group_norm(x, sd, prefix, act, timm_numerics):
    eps = 1e-5 if timm_numerics else 1e-6
    x = F.group_norm(x, 32, sd[prefix + "weight"], sd[prefix + "bias"], eps=eps)
    return F.relu(x) if act else x


def _conv_norm(x, sd, conv, norm, stride, act, timm_numerics):
    """ResNetV2 pairs every convolution with a norm: `<conv>weight`, then the `<norm>` GroupNorm."""
    x = _std_conv(x, sd[conv + "weight"], stride, timm_numerics)
    return _group_norm(x, sd, norm, act, timm_numerics)


def _resnet(sd, x, timm_numerics):
    stem = (
        "patch_embed.backbone.stem."
        if "patch_embed.backbone.stem.conv.weight" in sd
        else ("patch_embed.backbone.")
    )
    x = _conv_norm(x, sd, stem + "conv.", stem + "norm.", 2, True, timm_numerics)
    x = F.max_pool2d(_pad_same(x, 3, 2, value=-math.inf), 3, 2)
    stage = 0
    while f"patch_embed.backbone.stages.{stage}.blocks.0.conv1.weight" in sd:
        block = 0
        while (p := f"patch_embed.backbone.stages.{stage}.blocks.{block}.") + "conv1.weight" in sd:
            stride = 2 if stage > 0 and block == 0 else 1
            shortcut = x
            if p + "downsample.conv.weight" in sd:
                down = p + "downsample."
                shortcut = _conv_norm(
                    x, sd, down + "conv.", down + "norm.", stride, False, timm_numerics
                )
            y = _conv_norm(x, sd, p + "conv1.", p + "norm1.", 1, True, timm_numerics)
            y = _conv_norm(y, sd, p + "conv2.", p + "norm2.", stride, True, timm_numerics)
            y = _conv_norm(y, sd, p + "conv3.", p + "norm3.", 1, False, timm_numerics)
            x = F.relu(y + shortcut)
            block += 1
        stage += 1
    return x


def _layer_norm(x, sd, prefix):
    return F.layer_norm(x, x.shape[-1:], sd[prefix + "weight"], sd[prefix + "bias"], LAYER_NORM_EPS)


@torch.no_grad()
def forward(
    state_dict, images_nhwc, *, num_heads: int, global_pool: str, timm_numerics: bool = True
):
    """Logits `[B, C]` of the timm ViT whose weights are `state_dict` (numpy or torch)."""
    sd = {k: torch.as_tensor(v) for k, v in state_dict.items()}
    x = torch.as_tensor(images_nhwc).permute(0, 3, 1, 2)  # NCHW, as timm takes images.
    if any(k.startswith("patch_embed.backbone.") for k in sd):
        x = _resnet(sd, x, timm_numerics)
    patch = sd["patch_embed.proj.weight"].shape[-1]
    x = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=patch)
    x = x.flatten(2).transpose(1, 2)  # [B, N, D]
    batch, _, width = x.shape
    if "cls_token" in sd:
        x = torch.cat([sd["cls_token"].expand(batch, -1, -1), x], dim=1)
    x = x + sd["pos_embed"]
    head_dim = width // num_heads
    i = 0
    while (p := f"blocks.{i}.") + "norm1.weight" in sd:
        h = _layer_norm(x, sd, p + "norm1.")
        qkv = F.linear(h, sd[p + "attn.qkv.weight"], sd[p + "attn.qkv.bias"])
        q, k, v = qkv.reshape(batch, -1, 3, num_heads, head_dim).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v)  # [B, heads, N, head_dim]
        attended = attended.transpose(1, 2).reshape(batch, -1, width)
        x = x + F.linear(attended, sd[p + "attn.proj.weight"], sd[p + "attn.proj.bias"])
        h = _layer_norm(x, sd, p + "norm2.")
        h = F.gelu(
            F.linear(h, sd[p + "mlp.fc1.weight"], sd[p + "mlp.fc1.bias"]), approximate="tanh"
        )
        x = x + F.linear(h, sd[p + "mlp.fc2.weight"], sd[p + "mlp.fc2.bias"])
        i += 1
    x = _layer_norm(x, sd, "norm.")
    x = x[:, 0] if global_pool == "token" else x.mean(dim=1)
    return F.linear(x, sd["head.weight"], sd["head.bias"]).numpy()
