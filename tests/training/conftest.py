"""Trainer tests: one persistent compilation cache per session.

Many tests build the same tiny model and steps again (resumed runs, reference runs, child
processes); with the cache each distinct computation compiles once. Child processes get it
through the environment (`CACHE_ENV`).
"""

from __future__ import annotations

import os

import jax
import pytest
from jax.experimental.compilation_cache import compilation_cache

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE_ENV: dict[str, str] = {}


@pytest.fixture(scope="package", autouse=True)
def persistent_compilation_cache(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("jax_cache"))
    settings = {
        "jax_compilation_cache_dir": directory,
        "jax_persistent_cache_min_compile_time_secs": 0,
        "jax_persistent_cache_min_entry_size_bytes": 0,
    }
    previous = {name: getattr(jax.config, name) for name in settings}
    for name, value in settings.items():
        jax.config.update(name, value)
        CACHE_ENV[name.upper()] = str(value)
    compilation_cache.reset_cache()  # Earlier tests may have settled on "no cache".
    yield directory
    for name, value in previous.items():
        jax.config.update(name, value)
    compilation_cache.reset_cache()
    CACHE_ENV.clear()


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a child `python` process: this repo importable, the cache shared."""
    env = {**os.environ, **CACHE_ENV, **extra}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO_ROOT, env.get("PYTHONPATH")) if p)
    return env
