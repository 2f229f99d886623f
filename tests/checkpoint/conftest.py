"""Session-wide tiny parameter trees (see tiny.py)."""

from typing import Any

import pytest

from tests.checkpoint import tiny


@pytest.fixture(scope="session")
def vit_params() -> dict[str, Any]:
    return tiny.init_params(tiny.tiny_config(representation_size=16))


@pytest.fixture(scope="session")
def hybrid_params() -> dict[str, Any]:
    return tiny.init_params(tiny.TINY_HYBRID)
