"""For tests of the CPU matmul custom calls (`models.onednn_matmul`, `models.cblas_matmul`):
skip where one cannot run here, but never where it should: with its extra and g++ installed,
it must build."""

from __future__ import annotations

import importlib.metadata
import shutil

import jax
import jax.numpy as jnp
import pytest

from vit_jax.models.backend_tuning import CUSTOM_CALLS

# Each library's wheels (its extra).
PACKAGES = {
    "onednn": ("onednn-cpu-gomp", "onednn-devel-cpu-gomp"),
    "openblas": ("scipy-openblas32",),
    "mkl": ("mkl",),
}
BFLOAT16, FLOAT32 = jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float32)
# (library, dtype) pairs each custom call takes.
LIBRARY_DTYPES = [
    ("onednn", BFLOAT16), ("onednn", FLOAT32), ("openblas", FLOAT32), ("mkl", FLOAT32),
]  # fmt: skip


def installed(library: str) -> bool:
    """Whether `library`'s wheels (its extra) and g++ are installed."""
    try:
        for package in PACKAGES[library]:
            importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return False
    return shutil.which("g++") is not None


def require(dtype, library: str) -> None:
    """Skips the test unless `library`'s custom call runs for `dtype` here: not a CPU backend,
    not installed, or (oneDNN) bfloat16 on a CPU without AVX-512 or AVX2-VNNI-2. Fails if the
    library's wheels and g++ are installed but the build fails."""
    if jax.default_backend() != "cpu":
        pytest.skip(f"{library}'s custom call runs on CPU only, not {jax.default_backend()}")
    module = CUSTOM_CALLS[library]
    reason = module.load()
    if installed(library):
        assert reason is None, reason
    elif reason is not None:
        pytest.skip(f"{library} or g++ not installed: {reason}")
    reason = module.unavailable(dtype)
    if reason is not None:
        pytest.skip(reason)
