"""bfloat16 training throughput and MFU: vit_jax against HF transformers' ViT in torch, same
device, same run (the GPU goal of issues 7 and 17: ViT-B/16 and L/16 at 224 on an H200, MFU
>= 50% and ahead of torch).

    python -m benchmarks.gpu_train --models ViT-B_16 ViT-L_16 --batch 256 --spec_tflops 989
    python -m benchmarks.gpu_train --models ViT-Ti_16 --batch 2 --image_size 32  # CPU smoke run
    python -m benchmarks.gpu_train --rows trainer --matmul_outputs float32  # one row, one setting

vit_jax: bfloat16 compute with float32 parameters (`get_model(..., dtype=bfloat16)`).
- "vit_jax step (xla | cudnn)": one plain SGD step per call (`model_throughput.train_step_fn`)
  with that attention core: JAX's XLA attention, or cuDNN's flash attention (NVIDIA GPUs).
- "vit_jax trainer": the trainer's own step at its defaults (`attention_implementation="auto"`,
  cuDNN where it runs on a GPU; accumulation steps as the trainer picks them).
`--matmul_outputs` sets the vit_jax rows' `matmul_outputs` (default "auto": bfloat16 on a GPU;
`models.matmul`), so that each setting can be measured in a process of its own. `--rows` picks
the rows (default: all).
torch: the same architecture in HF's ViT (SDPA attention, bfloat16 autocast, float32
parameters), eager and `torch.compile`.

MFU = matmul FLOPs per step / step time / peak. The FLOPs are the matmuls of our step with XLA's
attention, counted from its jaxpr (`vit_jax.plan.flops`): XLA's cost analysis of a compiled GPU
program skips the cuBLAS and cuDNN calls. Our last block computes the class token alone; HF's
ViT computes the whole block (ViT-B/16 at 224: about 7% more), so torch's MFU here is a slight
underestimate. Two peaks: the in-run bfloat16 matmul peak (XLA's 8192^2 matmul on this device)
and, if given, `--spec_tflops` (the vendor's dense bfloat16 figure; H200: 989).

Each row is also printed to stderr as it is measured ("# measured: {...}"), so that a run cut
short still reports.
"""

from __future__ import annotations

import json
import os
import sys
import time

# torch shares the device with JAX in this process: JAX must not take 75% of its memory up front.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax
import jax.numpy as jnp

from benchmarks import common
from benchmarks.model_throughput import (
    abstract_step_args,
    default_accum_steps,
    random_batch,
    random_params,
    time_train_step,
    time_trainer_step,
    train_step_fn,
)
from benchmarks.torch_compare import torch_models
from vit_jax import models
from vit_jax.models.matmul import MATMUL_OUTPUTS

ROWS = ("step", "trainer", "torch", "torch.compile")


def _inputs(model, batch: int, image_size: int):
    return random_params(model, image_size), *random_batch(batch, image_size)


def _model(name: str, implementation: str, matmul_outputs: str = "auto"):
    return models.get_model(
        name,
        num_classes=1000,
        dtype=jnp.bfloat16,
        attention_implementation=implementation,
        matmul_outputs=matmul_outputs,
    )


def matmul_flops(name: str, batch: int, image_size: int) -> float:
    """Matmul FLOPs of one plain training step with XLA's attention (traced, not compiled)."""
    from vit_jax.plan.flops import step_flops

    model = common.with_xla_matmuls(_model(name, "xla"))
    return float(step_flops(train_step_fn(model), *abstract_step_args(model, batch, image_size)))


def jax_step_seconds(
    name: str, batch: int, image_size: int, implementation: str, matmul_outputs: str
) -> float:
    model = _model(name, implementation, matmul_outputs)
    return time_train_step(model, *_inputs(model, batch, image_size))[0]


def trainer_step_seconds(name: str, batch: int, image_size: int, matmul_outputs: str) -> float:
    model = _model(name, "auto", matmul_outputs)
    params, images, labels = _inputs(model, batch, image_size)
    accum_steps = default_accum_steps(model, params, batch)
    return time_trainer_step(model, params, images, labels, accum_steps)


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
    parser.add_argument("--rows", nargs="+", choices=ROWS, default=list(ROWS))
    parser.add_argument(
        "--implementations",
        nargs="+",
        default=None,
        help="the step rows' attention; default: xla, and cudnn on GPUs",
    )
    parser.add_argument("--matmul_outputs", choices=MATMUL_OUTPUTS, default="auto")
    args = parser.parse_args(argv)

    on_gpu = jax.default_backend() == "gpu"
    peak = common.matmul_peak_gflops(jnp.bfloat16, size=8192 if on_gpu else 1024) * 1e9
    print(f"# bf16 matmul peak: {peak / 1e12:.1f} TFLOP/s", file=sys.stderr, flush=True)
    implementations = args.implementations or (["xla", "cudnn"] if on_gpu else ["xla"])
    rows = []
    for name in args.models:
        try:
            flops = matmul_flops(name, args.batch, args.image_size)
        except Exception as error:  # Rows still report img/s; MFU needs the count.
            print(f"# {name} FLOP count failed: {type(error).__name__}: {error}", file=sys.stderr)
            flops = None
        outputs = args.matmul_outputs
        measurements = []
        if "step" in args.rows:
            measurements += [
                (f"vit_jax step ({impl})", jax_step_seconds, (impl, outputs))
                for impl in implementations
            ]
        if "trainer" in args.rows:
            measurements.append(("vit_jax trainer", trainer_step_seconds, (outputs,)))
        if "torch" in args.rows:
            measurements.append(("torch eager", torch_step_seconds, (False,)))
        if "torch.compile" in args.rows:
            measurements.append(("torch.compile", torch_step_seconds, (True,)))
        timings = {}
        for label, measure, extra in measurements:
            try:
                seconds = measure(name, args.batch, args.image_size, *extra)
            except Exception as error:  # e.g. cuDNN refusing a shape: report, go on.
                print(f"# {name} {label} failed: {type(error).__name__}: {error}", file=sys.stderr)
                continue
            timings[label] = seconds
            row = {"model": name, "implementation": label, "step_s": seconds}
            if label.startswith("vit_jax"):
                row["matmul_outputs"] = outputs
            print(f"# measured: {json.dumps(row)}", file=sys.stderr, flush=True)
        ours = [v for k, v in timings.items() if k.startswith("vit_jax")]
        for label, seconds in timings.items():
            rate = None if flops is None else flops / seconds  # FLOP/s

            def per(unit: float, rate=rate) -> float | None:
                return None if rate is None else rate / unit

            row = {
                "model": name,
                "implementation": label,
                "batch": args.batch,
                "img_s": args.batch / seconds,
                "tflop_s": per(1e12),
                "mfu_vs_matmul_peak": per(peak),
                "best_vit_jax_vs_this": seconds / min(ours) if ours else None,
            }
            if args.spec_tflops:
                row["mfu_vs_spec"] = per(args.spec_tflops * 1e12)
            rows.append(row)
    common.report(
        rows,
        as_json=args.json,
        header={
            "bf16_matmul_peak_tflop_s": peak / 1e12,
            "image_size": args.image_size,
            "matmul_outputs": args.matmul_outputs,
        },
    )


if __name__ == "__main__":
    main()
