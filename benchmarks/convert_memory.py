"""Peak memory of `python -m vit_jax.convert` on a large synthetic checkpoint.

    python -m benchmarks.convert_memory [--model ViT-L_16] [--json]

Writes a random published-layout `.npz` of the model (ViT-L/16: 304M parameters, 1.2 GB;
ViT-H/14: 632M, 2.5 GB) to a temporary directory, then runs each conversion in a fresh
process: npz -> timm, npz -> hf, timm -> npz, hf -> npz. Each process reports its peak RSS;
the table shows the peak during the conversion net of the RSS after imports, as a multiple of
the checkpoint size (Linux only: it reads /proc/self/status).
The goal is at most about two copies of the model.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common

# After the imports, reset the kernel's peak-RSS mark (clear_refs 5), then convert, then print
# the RSS after the imports and the peak during the conversion, in bytes.
_CHILD = (
    """
import sys
import jax, numpy, safetensors, torch, vit_jax.checkpoint, vit_jax.convert
"""
    + common.PEAK_RSS_CODE
    + """
base = status('VmRSS')
reset_peak()
vit_jax.convert.convert(sys.argv[1], sys.argv[2], sys.argv[3], progress=False)
print(base, status('VmHWM'))
"""
)


def _rss(src: str, dst: str, to: str) -> tuple[int, int]:
    """(RSS after imports, peak RSS during the conversion) of a fresh process, in bytes."""
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, src, dst, to], check=True, capture_output=True, text=True
    ).stdout
    base, peak = out.split()[-2:]
    return int(base), int(peak)


def write_synthetic(name: str, path: str) -> int:
    """A random checkpoint of model `name`; returns its parameter bytes."""
    from vit_jax import checkpoint, models

    model = models.get_model(name, num_classes=1000)
    images = jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)
    shapes = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), images)["params"]
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: rng.standard_normal(s.shape, np.float32) * 0.02, shapes)
    checkpoint.save(params, path)
    return sum(leaf.nbytes for leaf in jax.tree.leaves(params))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="ViT-L_16")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        npz = os.path.join(tmp, "model.npz")
        size = write_synthetic(args.model, npz)
        steps = [
            ("npz -> timm", npz, os.path.join(tmp, "timm"), "timm"),
            ("npz -> hf", npz, os.path.join(tmp, "hf"), "hf"),
            ("timm -> npz", os.path.join(tmp, "timm"), os.path.join(tmp, "from_timm.npz"), "npz"),
            ("hf -> npz", os.path.join(tmp, "hf"), os.path.join(tmp, "from_hf.npz"), "npz"),
        ]
        rows = []
        for label, src, dst, to in steps:
            base, peak = _rss(src, dst, to)
            rows.append(
                {
                    "conversion": label,
                    "imports_gib": base / 2**30,
                    "peak_rss_gib": peak / 2**30,
                    "net_gib": (peak - base) / 2**30,
                    "net_copies": (peak - base) / size,
                }
            )
    result = {"model": args.model, "checkpoint_gib": size / 2**30, "rows": rows}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{args.model}: checkpoint {size / 2**30:.2f} GiB")
    for row in rows:
        print(
            f"{row['conversion']:<12} RSS after imports {row['imports_gib']:.2f} GiB, peak "
            f"{row['peak_rss_gib']:.2f} GiB: {row['net_gib']:.2f} GiB = "
            f"{row['net_copies']:.2f} x the checkpoint"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
