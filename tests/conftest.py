"""Test setup: 8 fake CPU devices (for mesh/sharding tests) and quiet TensorFlow.

XLA reads XLA_FLAGS when the backend starts, so this must run before anything imports jax.
"""

import os

os.environ["XLA_FLAGS"] = " ".join(
    [os.environ.get("XLA_FLAGS", ""), "--xla_force_host_platform_device_count=8"]
).strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# TensorFlow must not grab every core or any accelerator that JAX wants.
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
