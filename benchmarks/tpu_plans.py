"""Will ViT-B/16, L/16 and H/14 fit on TPU pods? Compiles each run with `vit_jax.plan`.

    python -m benchmarks.tpu_plans [--only p_l16_v5e256,f_h14_v5p128] [--json]

Each entry is a recipe (pre-training: `configs/vit_b16_pretrain.py`, 224 px, batch 4096;
fine-tuning: `configs/finetune.py` on ImageNet at 384 px, batch 512) on a pod with the mesh,
remat and scan chosen for it, compiled for the training step only (no eval step). Prints one
markdown row per entry: GiB per chip, fits, matmul FLOPs per chip and step, the img/s ceiling at
the chip's bf16 peak, and the compile time. Needs libtpu (`pip install -e ".[tpu]"`); each
compile takes minutes of CPU (unrolled ViT-B/16 ~10 min on a busy 2-core VM, scanned models
seconds to minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")

from vit_jax.plan import compile as plan_compile
from vit_jax.plan.topology import GIB, get_topology

PRETRAIN = "configs/vit_b16_pretrain.py"
FINETUNE = "configs/finetune.py"

# name: (config file, config argument, topology, overrides)
ENTRIES = {
    "p_b16_v5e256": (PRETRAIN, "ViT-B_16", "v5e:16x16", {}),
    "p_l16_v5e256": (PRETRAIN, "ViT-L_16", "v5e:16x16",
                     {"mesh.fsdp": 16, "model.remat": True, "model.scan_layers": True}),
    "p_h14_v4128": (PRETRAIN, "ViT-H_14", "v4:4x4x4",
                    {"mesh.fsdp": 4, "model.remat": True, "model.scan_layers": True}),
    "f_b16_v6e64": (FINETUNE, "b16,imagenet2012", "v6e:8x8", {}),
    "f_l16_v4128": (FINETUNE, "l16,imagenet2012", "v4:4x4x4", {"model.scan_layers": True}),
    "f_h14_v5p128": (FINETUNE, "h14,imagenet2012", "v5p:4x4x4", {"model.scan_layers": True}),
}  # fmt: skip

# The rest of the model x pod matrix, compiled quickly: scanned layers with remat (scan alone
# multiplies the temporaries), fsdp where a model's state needs it on that chip's HBM.
_POD_FSDP = {  # pod: (topology, fsdp for B/16, L/16, H/14)
    "v4128": ("v4:4x4x4", (1, 1, 4)),
    "v5e256": ("v5e:16x16", (1, 16, 16)),
    "v5p128": ("v5p:4x4x4", (1, 1, 1)),
    "v6e64": ("v6e:8x8", (1, 1, 4)),
}
for _pod, (_topology, _fsdp) in _POD_FSDP.items():
    for _model, _size in zip(("b16", "l16", "h14"), _fsdp):
        _overrides = {"mesh.fsdp": _size, "model.remat": True, "model.scan_layers": True}
        _name = "ViT-" + _model[0].upper() + "_" + _model[1:]
        ENTRIES.setdefault(f"p_{_model}_{_pod}", (PRETRAIN, _name, _topology, _overrides))
        ENTRIES.setdefault(
            f"f_{_model}_{_pod}", (FINETUNE, f"{_model},imagenet2012", _topology, _overrides)
        )


def load_config(path: str, arg: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location("plan_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def run_entry(name: str) -> dict:
    path, arg, topology_name, overrides = ENTRIES[name]
    config = load_config(path, arg)
    for key, value in overrides.items():
        section, _, field = key.rpartition(".")
        (config[section] if section else config)[field] = value
    topology = get_topology(topology_name)
    shape = plan_compile.dataset_shape(config, None)
    result = plan_compile.plan(config, topology, shape, with_eval=False)
    return {"name": name, "model": config.model.model_name, **result.to_json()}


def row(r: dict) -> str:
    mesh = f"{r['mesh']['data']}x{r['mesh']['fsdp']}"
    return (
        f"| {r['name']} | {r['model']} | {r['topology']} ({r['chips']} chips) | {r['batch']} | "
        f"{mesh} | {r['remat']} | {r['scan_layers']} | {r['bytes_per_chip'] / GIB:.2f} | "
        f"{r['fits']} | {r['flops_per_step'] / 1e12:.2f} | "
        f"{r['images_per_second_ceiling']:,.0f} | {r['compile_seconds']:.0f} |"
    )


HEADER = (
    "| entry | model | pod | batch | data x fsdp | remat | scan | GiB/chip | fits | "
    "TFLOP/chip/step | img/s ceiling | compile s |\n" + "|---" * 12 + "|"
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="Comma-separated entry names.")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n] or list(ENTRIES)
    if not args.json:
        print(HEADER, flush=True)
    for name in names:
        r = run_entry(name)
        print(json.dumps(r) if args.json else row(r), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
