"""ViT-B/16 forward and training step: vit_jax (XLA) against HF transformers' ViT in PyTorch,
eager and `torch.compile`, on the same machine in the same run.

    python -m benchmarks.torch_compare [--batch 8] [--image_size 224] [--dtype float32]
        [--no_compile] [--repeats 5] [--json]

Both sides use the same architecture (tanh-GELU, LayerNorm eps 1e-6, 1000 classes) and an SGD
step on softmax cross-entropy. Ours is the trainer's own step at its defaults
(`training.step.make_train_step` with `config.accum_steps` unset: micro-batches on CPU, see
`models/backend_tuning.py`), with the plain step (`model.apply` under `jax.grad`) beside it.
`--dtype bfloat16`: our bfloat16 compute (float32 parameters) against torch's CPU autocast to
bfloat16. Needs the `torch` extra.

Each side runs in the environment its users get. Ours re-executes itself first with glibc's
huge-page tunable, as `python -m vit_jax.train` does (vit_jax/cli/huge_pages.py;
VIT_JAX_HUGE_PAGES=0 turns it off for both). torch runs in a child process per row, with the
environment this command was started with, less that tunable (`--torch_huge_pages` keeps it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping

if __name__ == "__main__":  # Before the imports below: see vit_jax/cli/huge_pages.py.
    from vit_jax.cli import huge_pages

    huge_pages.reexec_with_huge_pages("benchmarks.torch_compare")

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common
from benchmarks.model_throughput import (
    default_accum_steps,
    forward_fn,
    random_batch,
    random_params,
    time_train_step,
    time_trainer_step,
)
from vit_jax import models
from vit_jax.cli.huge_pages import OPT_OUT, TUNABLE


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


def torch_timings(
    batch: int, image_size: int, compile_model: bool, dtype: str = "float32", repeats: int = 5
) -> dict[str, float]:
    torch, model = torch_models(image_size)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bfloat16")
    torch.set_num_threads(os.cpu_count() or 1)
    images = torch.rand(batch, 3, image_size, image_size) * 2 - 1
    labels = torch.arange(batch) % 1000
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    forward = torch.compile(model) if compile_model else model

    def infer():
        with torch.inference_mode(), autocast:
            return forward(pixel_values=images).logits

    def train():
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            logits = forward(pixel_values=images).logits
        loss = torch.nn.functional.cross_entropy(logits.float(), labels)
        loss.backward()
        optimizer.step()
        return loss

    model.eval()
    start = time.perf_counter()
    infer()
    first_call = time.perf_counter() - start
    fwd = _median(infer, repeats=repeats)
    model.train(False)  # No dropout in either framework's step: same math as ours.
    train()
    step = _median(train, repeats=repeats)
    return {"forward_s": fwd, "train_s": step, "first_call_s": first_call}


def torch_environment(environ: Mapping[str, str], huge_pages: bool) -> dict[str, str]:
    """`environ` for the torch child: without glibc's huge-page tunable unless `huge_pages`."""
    env = dict(environ)
    if not huge_pages:
        tunables = env.pop("GLIBC_TUNABLES", "").split(":")
        kept = [t for t in tunables if t and t.split("=")[0] != TUNABLE]
        if kept:
            env["GLIBC_TUNABLES"] = ":".join(kept)
        env[OPT_OUT] = "0"  # The child's own re-exec (this module's) must not add it back.
    return env


def torch_timings_in_child(
    batch: int,
    image_size: int,
    compile_model: bool,
    dtype: str,
    repeats: int,
    huge_pages: bool = False,
) -> dict[str, float]:
    """`torch_timings` in a child process: torch's own threads, heap and environment (the child
    imports this module, so jax is loaded there, unused)."""
    env = torch_environment(os.environ, huge_pages)
    args = [f"--batch={batch}", f"--image_size={image_size}", f"--dtype={dtype}"]
    args += [f"--repeats={repeats}", f"--torch_child={'compile' if compile_model else 'eager'}"]
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.torch_compare", *args],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    lines = done.stdout.strip().splitlines()
    if done.returncode or not lines:
        output = f"{done.stdout[-1000:]}\n{done.stderr[-3000:]}"
        raise RuntimeError(f"The torch child process failed (exit {done.returncode}):\n{output}")
    return json.loads(lines[-1])


def _median(fn, warmup: int = 2, repeats: int = 5) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def jax_timings(
    batch: int, image_size: int, dtype: str = "float32", repeats: int = 5
) -> dict[str, float]:
    model = models.get_model("ViT-B_16", num_classes=1000, dtype=jnp.dtype(dtype))
    params = random_params(model, image_size)
    images, labels = random_batch(batch, image_size)
    # The library's inference path (micro-batches on CPU), and one model.apply for reference.
    forward = forward_fn(model, "auto")
    whole = forward_fn(model)
    start = time.perf_counter()
    jax.block_until_ready(forward(params, images))
    first_call = time.perf_counter() - start
    fwd = common.time_call(lambda: forward(params, images), repeats=repeats)
    jax.block_until_ready(whole(params, images))
    fwd_whole = common.time_call(lambda: whole(params, images), repeats=repeats)
    accum_steps = default_accum_steps(model, params, batch)
    train = time_trainer_step(model, params, images, labels, accum_steps, repeats=repeats)
    plain, _ = time_train_step(model, params, images, labels)
    return {
        "forward_s": fwd,
        "forward_whole_batch_s": fwd_whole,
        "train_s": train,
        "train_plain_s": plain,
        "accum_steps": accum_steps,
        "first_call_s": first_call,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--no_compile", action="store_true", help="Skip torch.compile.")
    parser.add_argument("--repeats", type=int, default=5, help="Timed calls (median) per row.")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--torch_huge_pages", action="store_true", help="Run torch with glibc's tunable too."
    )
    parser.add_argument("--torch_child", choices=["eager", "compile"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    shape = (args.batch, args.image_size)
    if args.torch_child:  # One torch row, as JSON on the last line, for the parent process.
        timings = torch_timings(*shape, args.torch_child == "compile", args.dtype, args.repeats)
        print(json.dumps(timings))
        return
    ours = jax_timings(*shape, args.dtype, args.repeats)
    results = {f"vit_jax (XLA), trainer step, accum_steps {ours['accum_steps']}": ours}
    for name, compile_model in (("torch eager", False), ("torch.compile", True)):
        if not (compile_model and args.no_compile):
            results[name] = torch_timings_in_child(
                *shape, compile_model, args.dtype, args.repeats, args.torch_huge_pages
            )
    results["vit_jax, one model.apply / plain step"] = {
        **ours,
        "forward_s": ours["forward_whole_batch_s"],
        "train_s": ours["train_plain_s"],
    }
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
    header = {"model": "ViT-B_16", "batch": args.batch, "dtype": args.dtype}
    torch_env = torch_environment(os.environ, args.torch_huge_pages)
    header["torch_glibc_tunables"] = torch_env.get("GLIBC_TUNABLES") or "-"
    common.report(rows, as_json=args.json, header=header)


if __name__ == "__main__":
    main()
