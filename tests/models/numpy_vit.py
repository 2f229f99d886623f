"""An independent float64 NumPy implementation of ViT and the hybrid ResNet stem.

Written from the paper's equations and the published checkpoints' conventions, sharing no code
with `vit_jax`: it reads a parameter tree in the published layout and computes logits.
"""

from __future__ import annotations

import math

import numpy as np


def layer_norm(x, p, eps=1e-6):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * p["scale"] + p["bias"]


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def tf_same_pads(size, kernel, stride):
    """TensorFlow SAME: output ceil(size/stride); odd padding puts the extra at the end."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def conv2d(x, w, stride, padding):
    """x [B, H, W, C], w [kh, kw, C, F] (HWIO) -> [B, H', W', F], by summing kernel taps."""
    kh, kw = w.shape[:2]
    if padding == "SAME":
        (pt, pb), (pl, pr) = (
            tf_same_pads(x.shape[1], kh, stride),
            tf_same_pads(x.shape[2], kw, stride),
        )
        x = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    out_h = (x.shape[1] - kh) // stride + 1
    out_w = (x.shape[2] - kw) // stride + 1
    y = np.zeros((x.shape[0], out_h, out_w, w.shape[3]))
    for i in range(kh):
        for j in range(kw):
            tap = x[:, i : i + stride * out_h : stride, j : j + stride * out_w : stride, :]
            y += tap @ w[i, j]
    return y


def std_conv(x, w, stride):
    w = w - w.mean(axis=(0, 1, 2), keepdims=True)
    w = w / (w.std(axis=(0, 1, 2), keepdims=True) + 1e-5)
    return conv2d(x, w, stride, "SAME")


def group_norm(x, p, groups=32, eps=1e-6):
    b, h, w, c = x.shape
    g = x.reshape(b, h, w, groups, c // groups)
    mean = g.mean(axis=(1, 2, 4), keepdims=True)
    var = g.var(axis=(1, 2, 4), keepdims=True)
    g = (g - mean) / np.sqrt(var + eps)
    return g.reshape(b, h, w, c) * p["scale"].reshape(-1) + p["bias"].reshape(-1)


def max_pool_same(x, k=3, stride=2):
    (pt, pb), (pl, pr) = tf_same_pads(x.shape[1], k, stride), tf_same_pads(x.shape[2], k, stride)
    x = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=-np.inf)
    out_h = (x.shape[1] - k) // stride + 1
    out_w = (x.shape[2] - k) // stride + 1
    y = np.full((x.shape[0], out_h, out_w, x.shape[3]), -np.inf)
    for i in range(k):
        for j in range(k):
            y = np.maximum(
                y, x[:, i : i + stride * out_h : stride, j : j + stride * out_w : stride]
            )
    return y


def relu(x):
    return np.maximum(x, 0.0)


def bottleneck(x, p, stride):
    residual = x
    if "conv_proj" in p:
        residual = group_norm(std_conv(x, p["conv_proj"]["kernel"], stride), p["gn_proj"])
    y = relu(group_norm(std_conv(x, p["conv1"]["kernel"], 1), p["gn1"]))
    y = relu(group_norm(std_conv(y, p["conv2"]["kernel"], stride), p["gn2"]))
    y = group_norm(std_conv(y, p["conv3"]["kernel"], 1), p["gn3"])
    return relu(residual + y)


def resnet_stem(x, params):
    x = relu(group_norm(std_conv(x, params["conv_root"]["kernel"], 2), params["gn_root"]))
    x = max_pool_same(x)
    stage = 1
    while f"block{stage}" in params:
        block = params[f"block{stage}"]
        unit = 1
        while f"unit{unit}" in block:
            stride = 2 if (stage > 1 and unit == 1) else 1
            x = bottleneck(x, block[f"unit{unit}"], stride)
            unit += 1
        stage += 1
    return x


def attention(x, p, num_heads):
    q = np.einsum("bnd,dhk->bnhk", x, p["query"]["kernel"]) + p["query"]["bias"]
    k = np.einsum("bnd,dhk->bnhk", x, p["key"]["kernel"]) + p["key"]["bias"]
    v = np.einsum("bnd,dhk->bnhk", x, p["value"]["kernel"]) + p["value"]["bias"]
    weights = softmax(np.einsum("bqhk,bshk->bhqs", q, k) / math.sqrt(q.shape[-1]))
    out = np.einsum("bhqs,bshk->bqhk", weights, v)
    return np.einsum("bqhk,hkd->bqd", out, p["out"]["kernel"]) + p["out"]["bias"], weights


def encoder_block(x, p, num_heads):
    y, weights = attention(
        layer_norm(x, p["LayerNorm_0"]), p["MultiHeadDotProductAttention_1"], num_heads
    )
    x = x + y
    mlp = p["MlpBlock_3"]
    y = layer_norm(x, p["LayerNorm_2"])
    y = gelu_tanh(y @ mlp["Dense_0"]["kernel"] + mlp["Dense_0"]["bias"])
    y = y @ mlp["Dense_1"]["kernel"] + mlp["Dense_1"]["bias"]
    return x + y, weights


def patchify(x, kernel, bias):
    """Non-overlapping PxP patches times the embedding kernel [P, P, C, D] -> [B, gh*gw, D]."""
    ph, pw, c, d = kernel.shape
    b, h, w, _ = x.shape
    gh, gw = h // ph, w // pw
    x = x[:, : gh * ph, : gw * pw].reshape(b, gh, ph, gw, pw, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, gh * gw, ph * pw * c) @ kernel.reshape(-1, d) + bias


def vit_forward(params, images, *, num_heads, classifier="token", hybrid=False):
    """Returns (logits, pre_logits, encoded, per-layer attention weights)."""
    params = _to_float64(params)
    x = np.asarray(images, np.float64)
    if hybrid:
        x = resnet_stem(x, params)
    x = patchify(x, params["embedding"]["kernel"], params["embedding"]["bias"])
    if classifier == "token":
        cls = np.broadcast_to(params["cls"], (x.shape[0], 1, x.shape[2]))
        x = np.concatenate([cls, x], axis=1)
    enc = params["Transformer"]
    x = x + enc["posembed_input"]["pos_embedding"]
    all_weights = []
    layer = 0
    while f"encoderblock_{layer}" in enc:
        x, weights = encoder_block(x, enc[f"encoderblock_{layer}"], num_heads)
        all_weights.append(weights)
        layer += 1
    encoded = layer_norm(x, enc["encoder_norm"])
    pooled = encoded[:, 0] if classifier == "token" else encoded.mean(axis=1)
    if "pre_logits" in params:
        pooled = np.tanh(pooled @ params["pre_logits"]["kernel"] + params["pre_logits"]["bias"])
    logits = pooled @ params["head"]["kernel"] + params["head"]["bias"]
    return logits, pooled, encoded, all_weights


def _to_float64(tree):
    if isinstance(tree, dict):
        return {k: _to_float64(v) for k, v in tree.items()}
    return np.asarray(tree, np.float64)
