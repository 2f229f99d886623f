"""Will a run fit? Compile its training step for a TPU topology on a CPU host and read the costs.

    python -m vit_jax.plan --config configs/vit_b16_pretrain.py --topology v5e:4x4 \
        --config.batch=1024
"""

from __future__ import annotations

import importlib
from typing import Any

# Imported on first use: `vit_jax.plan.compile` pulls in the trainer and its data pipeline
# (TensorFlow), which `vit_jax.plan.flops` alone does not need (benchmarks/gpu_train.py counts
# FLOPs with it on GPU machines without TensorFlow).
_EXPORTS = {
    "CHIPS": "topology",
    "DatasetShape": "compile",
    "Plan": "compile",
    "StepCost": "compile",
    "Topology": "topology",
    "TopologyError": "topology",
    "dataset_shape": "compile",
    "get_topology": "topology",
    "plan": "compile",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'vit_jax.plan' has no attribute {name!r}")
    return getattr(importlib.import_module(f"vit_jax.plan.{_EXPORTS[name]}"), name)
