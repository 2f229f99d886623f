"""For tests of oneDNN's custom call (`models.onednn_matmul`): skip where it cannot run here,
but never where it should: with the `onednn` extra and g++ installed, it must build."""

from __future__ import annotations

import importlib.metadata
import shutil

import jax
import pytest

from vit_jax.models import onednn_matmul


def installed() -> bool:
    """Whether oneDNN's wheels (the `onednn` extra) and g++ are installed."""
    try:
        for package in ("onednn-cpu-gomp", "onednn-devel-cpu-gomp"):
            importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return False
    return shutil.which("g++") is not None


def require(dtype) -> None:
    """Skips the test unless the custom call runs for `dtype` here: not a CPU backend, not
    installed, or bfloat16 on a CPU without AVX-512 or AVX2-VNNI-2. Fails if oneDNN's wheels and
    g++ are installed but the build fails."""
    if jax.default_backend() != "cpu":
        pytest.skip(f"oneDNN's custom call runs on CPU only, not {jax.default_backend()}")
    reason = onednn_matmul.load()
    if installed():
        assert reason is None, reason
    elif reason is not None:
        pytest.skip(f"oneDNN or g++ not installed: {reason}")
    reason = onednn_matmul.unavailable(dtype)
    if reason is not None:
        pytest.skip(reason)
