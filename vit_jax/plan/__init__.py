"""Will a run fit? Compile its training step for a TPU topology on a CPU host and read the costs.

    python -m vit_jax.plan --config configs/vit_b16_pretrain.py --topology v5e:4x4 \
        --config.batch=1024
"""

from vit_jax.plan.compile import DatasetShape, Plan, StepCost, dataset_shape, plan
from vit_jax.plan.topology import CHIPS, Topology, TopologyError, get_topology

__all__ = [
    "CHIPS",
    "DatasetShape",
    "Plan",
    "StepCost",
    "Topology",
    "TopologyError",
    "dataset_shape",
    "get_topology",
    "plan",
]
