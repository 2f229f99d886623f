"""ViT-B/16 forward and training step: vit_jax (XLA) against HF transformers' ViT in PyTorch,
eager and `torch.compile`, on the same machine in the same run.

    python -m benchmarks.torch_compare [--batch 8] [--image_size 224] [--no_compile] [--json]

Both sides use float32, the same architecture (tanh-GELU, LayerNorm eps 1e-6, 1000 classes)
and an SGD step on softmax cross-entropy. Needs the `torch` extra.
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common
from benchmarks.model_throughput import forward_fn, random_params, time_train_step
from vit_jax import models


def torch_models(image_size: int, name: str = "ViT-B_16"):
    """HF transformers' ViT with the architecture of our plain variant `name` (SDPA attention,
    tanh-GELU, LayerNorm eps 1e-6, 1000 classes)."""
    import torch
    import transformers

    ours = models.get_config(name)
    if ours.resnet is not None or ours.classifier != "token":
        raise ValueError(f"{name}: HF's ViT class holds token-pooled plain ViTs only.")
    config = transformers.ViTConfig(
        image_size=image_size,
        patch_size=ours.patches.size[0],
        hidden_size=ours.hidden_size,
        num_hidden_layers=ours.transformer.num_layers,
        num_attention_heads=ours.transformer.num_heads,
        intermediate_size=ours.transformer.mlp_dim,
        hidden_act="gelu_pytorch_tanh",
        layer_norm_eps=1e-6,
        num_labels=1000,
        attn_implementation="sdpa",
    )
    torch.manual_seed(0)
    return torch, transformers.ViTForImageClassification(config)


def torch_timings(batch: int, image_size: int, compile_model: bool) -> dict[str, float]:
    torch, model = torch_models(image_size)
    torch.set_num_threads(os.cpu_count() or 1)
    images = torch.rand(batch, 3, image_size, image_size) * 2 - 1
    labels = torch.arange(batch) % 1000
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    forward = torch.compile(model) if compile_model else model

    def infer():
        with torch.inference_mode():
            return forward(pixel_values=images).logits

    def train():
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(forward(pixel_values=images).logits, labels)
        loss.backward()
        optimizer.step()
        return loss

    model.eval()
    start = time.perf_counter()
    infer()
    first_call = time.perf_counter() - start
    fwd = _median(infer)
    model.train(False)  # No dropout in either framework's step: same math as ours.
    train()
    step = _median(train)
    return {"forward_s": fwd, "train_s": step, "first_call_s": first_call}


def _median(fn, warmup: int = 2, repeats: int = 5) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def jax_timings(batch: int, image_size: int) -> dict[str, float]:
    model = models.get_model("ViT-B_16", num_classes=1000)
    params = random_params(model, image_size)
    images = jax.random.uniform(jax.random.key(2), (batch, image_size, image_size, 3), minval=-1)
    labels = jax.nn.one_hot(jnp.arange(batch) % 1000, 1000)
    # The library's inference path (micro-batches on CPU), and one model.apply for reference.
    forward = forward_fn(model, "auto")
    whole = forward_fn(model)
    start = time.perf_counter()
    jax.block_until_ready(forward(params, images))
    first_call = time.perf_counter() - start
    fwd = common.time_call(lambda: forward(params, images))
    jax.block_until_ready(whole(params, images))
    fwd_whole = common.time_call(lambda: whole(params, images))
    train, _ = time_train_step(model, params, images, labels)
    return {
        "forward_s": fwd,
        "forward_whole_batch_s": fwd_whole,
        "train_s": train,
        "first_call_s": first_call,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--no_compile", action="store_true", help="Skip torch.compile.")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    results = {"vit_jax (XLA)": jax_timings(args.batch, args.image_size)}
    results["torch eager"] = torch_timings(args.batch, args.image_size, compile_model=False)
    if not args.no_compile:
        results["torch.compile"] = torch_timings(args.batch, args.image_size, compile_model=True)
    ours = results["vit_jax (XLA)"]
    results["vit_jax, one model.apply"] = {**ours, "forward_s": ours["forward_whole_batch_s"]}
    rows = [
        {
            "implementation": name,
            "forward_img_s": args.batch / r["forward_s"],
            "train_img_s": args.batch / r["train_s"],
            "ours_vs_this_forward": r["forward_s"] / ours["forward_s"],
            "ours_vs_this_train": r["train_s"] / ours["train_s"],
            "first_call_s": r["first_call_s"],
        }
        for name, r in results.items()
    ]
    common.report(rows, as_json=args.json, header={"model": "ViT-B_16", "batch": args.batch})


if __name__ == "__main__":
    main()
