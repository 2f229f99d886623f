"""Full parity with the real timm: convert, `timm.create_model`, load, compare logits.

    python -m benchmarks.timm_parity [--npz PATH ...] [--json]

timm needs torchvision, whose PyPI wheels load only beside torch's CUDA build (no GPU needed):
`.ci/timm-env .venv .venv-timm` builds such an environment on top of the dev one, then
`.venv-timm/bin/python -m benchmarks.timm_parity`. (CI runs tests/convert/test_timm_real.py
there; this script prints the figures, and takes published files.) For each case (ViT-S/16
token, ViT-S/16 GAP, R50+ViT-B/16 hybrid, with random parameters; or the given published
`.npz` files) it runs
`python -m vit_jax.convert --to timm`, builds `timm.create_model(architecture, **model_args)`
from the written config.json, loads the safetensors with `strict=True`, and prints the largest
absolute logit difference to ours (float32, same random images in [-1, 1]).

Expected: ~1e-5 for token and GAP models. Hybrids differ a little more, because timm's stem
standardises weights with sqrt(var + 1e-8) and GroupNorm eps 1e-5 where the published models
use (std + 1e-5) and 1e-6.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import jax
import numpy as np

from tests.models.tiny import random_params  # Every leaf random: every parameter counts.
from vit_jax import checkpoint, models
from vit_jax.convert import convert

CASES = {"token": "ViT-S_16", "gap": "ViT-S_16-gap-norep", "hybrid": "R50+ViT-B_16"}
IMAGE_SIZE = 224
NUM_CLASSES = 10


def compare(npz: str, workdir: str, images: np.ndarray) -> dict:
    import safetensors.torch
    import timm
    import torch

    params = checkpoint.load(npz)
    config = checkpoint.infer_config(params)
    model = models.build_model(config, checkpoint.infer_num_classes(params))
    height, width = checkpoint.infer_image_size(params, config)
    x = images[:, :height, :width]
    ours = np.asarray(jax.jit(model.apply)({"params": params}, x))

    out = os.path.join(workdir, os.path.basename(npz).removesuffix(".npz") + "_timm")
    convert(npz, out, "timm", progress=False)
    with open(os.path.join(out, "config.json")) as f:
        timm_config = json.load(f)
    timm_model = timm.create_model(timm_config["architecture"], **timm_config["model_args"])
    state = safetensors.torch.load_file(os.path.join(out, "model.safetensors"))
    timm_model.load_state_dict(state, strict=True)
    with torch.no_grad():
        theirs = timm_model.eval()(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()
    return {
        "checkpoint": os.path.basename(npz),
        "architecture": timm_config["architecture"],
        "max_abs_diff": float(np.abs(theirs - ours).max()),
        "max_abs_logit": float(np.abs(ours).max()),
        "argmax_agree": float(np.mean(theirs.argmax(-1) == ours.argmax(-1))),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--npz", nargs="*", help="published .npz files (default: random models)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    try:
        import timm
        import torch
    except Exception as e:  # ImportError, or torchvision's RuntimeError beside CPU-only torch.
        print(
            f"skipped: timm is not importable here ({e}). Build an environment where it is "
            "with `.ci/timm-env .venv .venv-timm` and run this with .venv-timm/bin/python.",
            file=sys.stderr,
        )
        return 0

    images = np.random.default_rng(0).uniform(-1, 1, (args.batch, 384, 384, 3)).astype(np.float32)
    results = []
    with tempfile.TemporaryDirectory() as workdir:
        paths = args.npz or []
        if not paths:
            for case, name in CASES.items():
                model = models.get_model(name, num_classes=NUM_CLASSES)
                path = os.path.join(workdir, f"{case}.npz")
                checkpoint.save(random_params(model, IMAGE_SIZE), path)
                paths.append(path)
        for path in paths:
            results.append(compare(path, workdir, images))
    if args.json:
        print(json.dumps({"timm": timm.__version__, "results": results}, indent=2))
    else:
        print(f"timm {timm.__version__}, torch {torch.__version__}")
        for r in results:
            print(
                f"{r['checkpoint']:<40} {r['architecture']:<28} max|diff| {r['max_abs_diff']:.2e} "
                f"(max|logit| {r['max_abs_logit']:.2f}, argmax agree {r['argmax_agree']:.0%})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
