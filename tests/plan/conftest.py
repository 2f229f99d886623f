"""Plan tests compile for TPU topologies with libtpu (the `[tpu]` extra).

Without libtpu they are skipped with the reason; `.ci/run` sets VIT_JAX_REQUIRE_TPU=1, which
turns the absence into a failure (CI installs the extra).
"""

from __future__ import annotations

import importlib.util
import os

import ml_collections
import pytest

from tests.training import tiny_config

HAVE_LIBTPU = importlib.util.find_spec("libtpu") is not None


@pytest.fixture
def libtpu():
    if not HAVE_LIBTPU:
        if os.environ.get("VIT_JAX_REQUIRE_TPU") == "1":
            pytest.fail("VIT_JAX_REQUIRE_TPU=1 but libtpu is absent: pip install -e '.[tpu]'")
        pytest.skip('libtpu is not installed (pip install -e ".[tpu]"); no TPU compiler here')


def small_config(mesh: dict[str, int], batch: int = 16) -> ml_collections.ConfigDict:
    """One 512-wide layer: big enough that TPU tile padding does not hide the shard sizes."""
    config = tiny_config.get_config()
    config.model.hidden_size = 512
    config.model.transformer.update(mlp_dim=1024, num_heads=4)
    config.mesh.update(mesh)
    config.batch = batch
    config.batch_eval = batch
    return config
