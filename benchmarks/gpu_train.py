"""bfloat16 training throughput and MFU: vit_jax against HF transformers' ViT in torch, same
device, same run (issue 7's GPU goal: ViT-B/16 and L/16 at 224 on an H200, MFU >= 50%).

    python -m benchmarks.gpu_train --models ViT-B_16 ViT-L_16 --batch 256 [--json]
    python -m benchmarks.gpu_train --models ViT-Ti_16 --batch 2 --image_size 32  # CPU smoke run

vit_jax: bfloat16 compute with float32 parameters (`get_model(..., dtype=bfloat16)`), one SGD
step per call, for each attention implementation ("xla", and "cudnn" flash attention through
`jax.nn.dot_product_attention` on NVIDIA GPUs). torch: the same architecture in HF's ViT
(SDPA attention, bfloat16 autocast, float32 parameters), eager and `torch.compile`. The
FLOPs per image are XLA's count of our step, whose last block computes the class token alone;
HF's ViT computes the whole block (ViT-B/16 at 224: about 7% more), so torch's MFU here is a
slight underestimate.

MFU = the model's FLOPs per step (XLA's cost analysis of our step) / step time / peak. Two
peaks: the in-run bfloat16 matmul peak (XLA's 8192^2 matmul on this device) and, if given,
`--spec_tflops` (the vendor's dense bfloat16 figure; H200: 989).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp

from benchmarks import common
from benchmarks.model_throughput import random_params, time_train_step
from benchmarks.torch_compare import torch_models
from vit_jax import models


def jax_step_seconds(name: str, batch: int, image_size: int, implementation: str):
    model = models.get_model(
        name, num_classes=1000, dtype=jnp.bfloat16, attention_implementation=implementation
    )
    params = random_params(model, image_size)
    images = jax.random.uniform(jax.random.key(2), (batch, image_size, image_size, 3), minval=-1)
    labels = jax.nn.one_hot(jnp.arange(batch) % 1000, 1000)
    return time_train_step(model, params, images, labels)


def torch_step_seconds(name: str, batch: int, image_size: int, compile_model: bool) -> float:
    torch, model = torch_models(image_size, name)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = model.to(device).train(False)  # No dropout: the same math as our step.
    images = torch.rand(batch, 3, image_size, image_size, device=device) * 2 - 1
    labels = torch.arange(batch, device=device) % 1000
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    forward = torch.compile(model) if compile_model else model

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=torch.bfloat16):
            logits = forward(pixel_values=images).logits
        torch.nn.functional.cross_entropy(logits.float(), labels).backward()
        optimizer.step()

    def timed() -> float:
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    for _ in range(3):
        timed()
    return sorted(timed() for _ in range(5))[2]


def main(argv=None) -> None:
    parser = common.model_parser(__doc__, ["ViT-B_16", "ViT-L_16"])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--spec_tflops", type=float, default=None)
    parser.add_argument("--no_torch", action="store_true")
    args = parser.parse_args(argv)

    on_gpu = jax.default_backend() == "gpu"
    peak = common.matmul_peak_gflops(jnp.bfloat16, size=8192 if on_gpu else 1024) * 1e9
    implementations = ["xla", "cudnn"] if on_gpu else ["xla"]
    rows = []
    for name in args.models:
        timings = {}
        flops = 0.0
        for impl in implementations:
            try:
                seconds, flops = jax_step_seconds(name, args.batch, args.image_size, impl)
            except Exception as error:  # e.g. cuDNN refusing these shapes: report, go on.
                print(f"# {name} vit_jax ({impl}) failed: {type(error).__name__}: {error}")
                continue
            timings[f"vit_jax ({impl})"] = seconds
        if not timings:
            continue
        if not args.no_torch:
            timings["torch eager"] = torch_step_seconds(name, args.batch, args.image_size, False)
            timings["torch.compile"] = torch_step_seconds(name, args.batch, args.image_size, True)
        ours = min(v for k, v in timings.items() if k.startswith("vit_jax"))
        for label, seconds in timings.items():
            row = {
                "model": name,
                "implementation": label,
                "batch": args.batch,
                "img_s": args.batch / seconds,
                "tflop_s": flops / seconds / 1e12,
                "mfu_vs_matmul_peak": flops / seconds / peak,
                "best_vit_jax_vs_this": seconds / ours,
            }
            if args.spec_tflops:
                row["mfu_vs_spec"] = flops / seconds / (args.spec_tflops * 1e12)
            rows.append(row)
    common.report(
        rows,
        as_json=args.json,
        header={"bf16_matmul_peak_tflop_s": peak / 1e12, "image_size": args.image_size},
    )


if __name__ == "__main__":
    main()
