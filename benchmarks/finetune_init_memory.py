"""Peak memory of fine-tuning initialisation (`Trainer.initial_state` from a `.npz`) under FSDP.

    python -m benchmarks.finetune_init_memory [--model ViT-H_14] [--fsdp 8] [--before COMMIT]

Writes a random published-layout `.npz` of the model (no published checkpoint can be
downloaded here) and times nothing: a fresh process with `fsdp` fake CPU devices (mesh
data=1 x fsdp) builds the `Trainer` and runs `initial_state()`; it reports its peak RSS net of
the RSS after building the Trainer, as a multiple of the checkpoint size, and the bytes each
device holds afterwards. Fake CPU devices live in host memory, so the RSS peak counts the host
copies and every device's buffers together. `--before COMMIT` runs the same child on that
commit's `vit_jax` (extracted with `git archive`) for a before/after ratio; the old code puts a
whole replicated copy of the parameters on every device, so use a small model there.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

from benchmarks import common
from benchmarks.convert_memory import write_synthetic

# Built before the RSS mark is reset: imports, the Trainer (abstract shapes, jitted steps).
_CHILD = (
    """
import json, sys, types
import jax
from configs import base
from vit_jax import sharding
from vit_jax.training.trainer import Trainer

model, fsdp, pretrained_dir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
config = base.get_config()
config.model = base.model_config(model)
config.pretrained_dir = pretrained_dir
config.mesh.update(data=1, fsdp=fsdp)
config.pp.crop = 224  # The checkpoint's resolution: no position-embedding resize.
mesh = sharding.make_mesh(config.mesh)
trainer = Trainer(config, mesh, types.SimpleNamespace(num_classes=10, image_size=224))
"""
    + common.PEAK_RSS_CODE
    + """
base_rss = status('VmRSS')
reset_peak()
state = jax.block_until_ready(trainer.initial_state())
per_device = {}
for leaf in jax.tree.leaves(state):
    for shard in leaf.addressable_shards:
        per_device[shard.device.id] = per_device.get(shard.device.id, 0) + shard.data.nbytes
print(json.dumps({"base": base_rss, "peak": status('VmHWM'),
                  "device_max": max(per_device.values()),
                  "state": sum(leaf.nbytes for leaf in jax.tree.leaves(state))}))
"""
)


def run_child(model: str, fsdp: int, pretrained_dir: str, code_dir: str) -> dict[str, int]:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={fsdp}"
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = code_dir
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, model, str(fsdp), pretrained_dir],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        cwd=code_dir,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def extract(commit: str, directory: str) -> None:
    """`vit_jax/` and `configs/` as of `commit`, into `directory`."""
    archive = subprocess.run(
        ["git", "archive", commit, "vit_jax", "configs"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", directory], input=archive, check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="ViT-H_14")
    parser.add_argument("--fsdp", type=int, default=8)
    parser.add_argument("--before", default=None, help="Also measure this commit's code.")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        size = write_synthetic(args.model, os.path.join(tmp, f"{args.model}.npz"))
        codes = {"now": repo}
        if args.before:
            codes[f"before ({args.before})"] = os.path.join(tmp, "before")
            os.makedirs(codes[f"before ({args.before})"])
            extract(args.before, codes[f"before ({args.before})"])
        for label, code in codes.items():
            rows[label] = run_child(args.model, args.fsdp, tmp, code)
    result = {"model": args.model, "fsdp": args.fsdp, "checkpoint_bytes": size, "runs": rows}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{args.model}, {args.fsdp} fake CPU devices, fsdp {args.fsdp}: checkpoint "
          f"{size / 2**30:.2f} GiB")  # fmt: skip
    for label, r in rows.items():
        net = r["peak"] - r["base"]
        print(
            f"{label:<22} peak RSS +{net / 2**30:.2f} GiB = {net / size:.2f} x the checkpoint "
            f"(host and all devices); per device after: {r['device_max'] / 2**30:.3f} GiB "
            f"(state {r['state'] / 2**30:.2f} GiB in all)"
        )
    if len(rows) == 2:
        now, before = (r["peak"] - r["base"] for r in rows.values())
        print(f"before / now peak: {before / now:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
