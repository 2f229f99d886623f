"""ViT-B/16 forward and training step: vit_jax (XLA) against HF transformers' ViT in PyTorch,
eager and `torch.compile`, on the same machine in the same run.

    python -m benchmarks.torch_compare [--batch 8] [--image_size 224] [--dtype float32]
        [--no_compile] [--repeats 3] [--rounds 3] [--matmul_library auto] [--json]

Both sides use the same architecture (tanh-GELU, LayerNorm eps 1e-6, 1000 classes) and an SGD
step on softmax cross-entropy. Ours is the trainer's own step at its defaults
(`training.step.make_train_step` with `config.accum_steps` unset: micro-batches on CPU, see
`models/backend_tuning.py`), with the plain step (`model.apply` under `jax.grad`) beside it.
`--dtype bfloat16`: our bfloat16 compute (float32 parameters) against torch's CPU autocast to
bfloat16. `--matmul_library` is the model's (`models.matmul`): "auto", the default, takes oneDNN's
custom call (the library torch's CPU bfloat16 matmuls use; the `onednn` extra) for bfloat16 on a CPU
with AMX (on an AMD one with AVX-512 bf16, for the attention core's products only), MKL's or else
OpenBLAS's (the `mkl`, `openblas` extras) for float32 on an Intel CPU with AVX-512, XLA's otherwise;
"xla", "onednn", "openblas" or "mkl" forces one.
Needs the `torch` extra.

Each side runs in the environment its users get. Ours re-executes itself first with glibc's
huge-page tunable, as `python -m vit_jax.train` does (vit_jax/cli/huge_pages.py;
VIT_JAX_HUGE_PAGES=0 turns it off for both). torch runs in a child process per row, with the
environment this command was started with, less that tunable (`--torch_huge_pages` keeps it).

The training steps are timed in `--rounds` rounds, each `--repeats` steps of ours, then of each
torch row (after one untimed step), and every row's figure is the median over all its rounds:
a machine whose speed drifts during the run (this 2-core VM's does, by as much as the
differences measured) slows every row alike. The forward rows (`--repeats` calls each) and
our plain step are timed alone, one after the other.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

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
    trainer_step_runner,
)
from vit_jax import models
from vit_jax.cli.huge_pages import environment_without_huge_pages
from vit_jax.models.backend_tuning import CUSTOM_CALL_NAMES
from vit_jax.models.matmul import (
    MATMUL_LIBRARIES,
    resolve_attention_products,
    resolve_library,
)


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


def torch_row(
    batch: int, image_size: int, compile_model: bool, dtype: str = "float32", repeats: int = 3
) -> tuple[dict[str, float], Callable[[], Any]]:
    """Times torch's forward; returns its timings and a training step that has run (warm)."""
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
    fwd = common.time_call(infer, repeats=repeats)
    model.train(False)  # No dropout in either framework's step: same math as ours.
    for _ in range(3):  # The first compiles (torch.compile), two more warm up.
        train()
    return {"forward_s": fwd, "first_call_s": first_call}, train


# Marks the child's protocol lines on stdout (anything else printed there is skipped).
_REPLY = "torch_compare:"


def serve_torch_row(*row_args: Any) -> None:
    """The child's side: one reply with the forward timings, then for each line of stdin (a
    number of steps) one reply with that many training steps' seconds."""
    timings, train = torch_row(*row_args)
    print(_REPLY + json.dumps(timings), flush=True)
    for line in sys.stdin:
        print(_REPLY + json.dumps(_seconds_each(train, int(line))), flush=True)


def _seconds_each(fn: Callable[[], Any], calls: int) -> list[float]:
    """Seconds of each of `calls` calls, after one untimed call: the first step after another
    process ran pays for its caches and for memory the kernel must find again (huge pages)."""
    return common.seconds_each(fn, warmup=1, repeats=calls)


def torch_environment(environ: Mapping[str, str], huge_pages: bool) -> dict[str, str]:
    """`environ` for the torch child: without glibc's huge-page tunable unless `huge_pages`."""
    return dict(environ) if huge_pages else environment_without_huge_pages(environ)


class TorchChild:
    """One torch row in a child process of its own, timing training steps when asked (lines on
    its stdin and stdout), so that its steps interleave with ours."""

    def __init__(
        self, batch: int, image_size: int, compile_model: bool, dtype: str, repeats: int,
        huge_pages: bool = False,
    ) -> None:  # fmt: skip
        args = [f"--batch={batch}", f"--image_size={image_size}", f"--dtype={dtype}"]
        args += [f"--repeats={repeats}", f"--torch_child={'compile' if compile_model else 'eager'}"]
        self._stderr = tempfile.TemporaryFile(mode="w+")  # A pipe could fill and block it.
        self._process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.torch_compare", *args],
            env=torch_environment(os.environ, huge_pages), stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self._stderr, text=True,
        )  # fmt: skip
        try:
            self.timings: dict[str, float] = self._reply()  # Its forward, timed alone.
        except BaseException:
            self.close()
            raise

    def train_seconds(self, steps: int) -> list[float]:
        try:
            self._process.stdin.write(f"{steps}\n")
            self._process.stdin.flush()
        except BrokenPipeError:
            self._failed()
        return self._reply()

    def close(self) -> None:
        """Ends the child: at once if it is still busy (an error or Ctrl-C in the parent)."""
        try:
            self._process.stdin.close()
            self._process.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            self._process.kill()
            self._process.wait()
        finally:
            self._stderr.close()

    def _reply(self) -> Any:
        for line in self._process.stdout:
            if _REPLY in line:  # Also after text a library wrote without a newline.
                return json.loads(line.split(_REPLY, 1)[1])
        self._failed()

    def _failed(self) -> NoReturn:
        self._process.wait(timeout=60)
        self._stderr.seek(0)
        error = self._stderr.read()[-3000:]
        raise RuntimeError(f"The torch child exited ({self._process.returncode}):\n{error}")


def jax_row(
    batch: int,
    image_size: int,
    dtype: str = "float32",
    repeats: int = 3,
    matmul_library: str = "auto",
) -> tuple[dict[str, float], Callable[[], Any]]:
    """Times our forward and plain step; returns the timings and the trainer's step, warm."""
    model = models.get_model(
        "ViT-B_16", num_classes=1000, dtype=jnp.dtype(dtype), matmul_library=matmul_library
    )
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
    trainer_step = trainer_step_runner(model, params, images, labels, accum_steps)
    for _ in range(3):  # The first compiles, two more warm up.
        jax.block_until_ready(trainer_step())
    plain, _ = time_train_step(model, params, images, labels)  # Donates `params`: last.
    timings = {
        "forward_s": fwd,
        "forward_whole_batch_s": fwd_whole,
        "train_plain_s": plain,
        "accum_steps": accum_steps,
        "first_call_s": first_call,
    }
    return timings, trainer_step


def interleaved_train_seconds(
    ours: Callable[[], Any], children: Mapping[str, TorchChild], rounds: int, steps: int
) -> dict[str | None, list[float]]:
    """Seconds of every training step, by row (None: ours), timed in rounds of `steps` steps of
    each row in turn; each round starts one row later than the one before."""
    runs: dict[str | None, Callable[[int], list[float]]] = {
        None: lambda n: _seconds_each(ours, n),
        **{name: child.train_seconds for name, child in children.items()},
    }
    # The pause lets the previous process's threads stop spinning for work.
    return common.round_robin_seconds(runs, rounds=rounds, steps=steps, pause=0.2)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--no_compile", action="store_true", help="Skip torch.compile.")
    parser.add_argument(
        "--repeats", type=int, default=3, help="Timed forward calls; training steps per round."
    )
    parser.add_argument("--rounds", type=int, default=3, help="Rounds of interleaved training.")
    parser.add_argument("--matmul_library", choices=MATMUL_LIBRARIES, default="auto")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--torch_huge_pages", action="store_true", help="Run torch with glibc's tunable too."
    )
    parser.add_argument("--torch_child", choices=["eager", "compile"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    shape = (args.batch, args.image_size)
    if args.torch_child:  # One torch row, serving the parent process.
        serve_torch_row(*shape, args.torch_child == "compile", args.dtype, args.repeats)
        return
    ours, trainer_step = jax_row(*shape, args.dtype, args.repeats, args.matmul_library)
    resolved = resolve_library(args.matmul_library, jnp.dtype(args.dtype))
    products = resolve_attention_products(args.matmul_library, jnp.dtype(args.dtype))
    library = "XLA" if resolved == "xla" else f"{CUSTOM_CALL_NAMES[resolved]} matmuls"
    if products != resolved:  # "auto" on AMD CPUs with AVX-512 bf16 (backend_tuning).
        library += f", {CUSTOM_CALL_NAMES.get(products, 'XLA')} attention products"
    ours_name = f"vit_jax ({library}), trainer step, accum_steps {ours['accum_steps']}"
    children = {}
    try:
        for name, compile_model in (("torch eager", False), ("torch.compile", True)):
            if not (compile_model and args.no_compile):
                children[name] = TorchChild(
                    *shape, compile_model, args.dtype, args.repeats, args.torch_huge_pages
                )
        seconds = interleaved_train_seconds(trainer_step, children, args.rounds, args.repeats)
    finally:
        for child in children.values():
            child.close()
    ours["train_s"] = float(np.median(seconds[None]))
    results = {ours_name: ours}
    for name, child in children.items():
        results[name] = {**child.timings, "train_s": float(np.median(seconds[name]))}
    results["vit_jax, one model.apply / plain step (timed alone)"] = {
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
    header["matmul_library"] = f"{args.matmul_library} ({resolved}; attention products: {products})"
    header["train_steps_timed_per_row"] = f"{args.rounds} rounds x {args.repeats}, interleaved"
    torch_env = torch_environment(os.environ, args.torch_huge_pages)
    header["torch_glibc_tunables"] = torch_env.get("GLIBC_TUNABLES") or "-"
    if args.json:  # Every timed step, in the order timed within each row.
        header["train_step_seconds"] = {name or ours_name: s for name, s in seconds.items()}
    common.report(rows, as_json=args.json, header=header)


if __name__ == "__main__":
    main()
