"""Finds the file behind `--config`: a path, else one of the shipped experiment configs.

The wheel ships the top-level `configs` package, so outside a checkout
`--config configs/digits.py`, `--config digits.py` and `--config digits` all name the installed
`configs/digits.py` (one copy of each config, wherever it runs). A path that exists always wins,
and `:arg` suffixes (`configs/finetune.py:b16,cifar10`) are kept.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence


def shipped_dir() -> str | None:
    """The directory of the importable `configs` package (checkout or installed), if any."""
    spec = importlib.util.find_spec("configs")
    if spec is None or not spec.submodule_search_locations:
        return None
    return next(iter(spec.submodule_search_locations))


def resolve(value: str) -> str:
    """`value` (`PATH[:ARG]`) with PATH replaced by a shipped config's file when PATH is absent."""
    path, sep, arg = value.partition(".py:")
    path = path + ".py" if sep else path
    if os.path.exists(path):
        return value
    name = os.path.basename(path)
    name = name if name.endswith(".py") else name + ".py"
    directory = shipped_dir()
    if directory is None or not os.path.exists(os.path.join(directory, name)):
        return value  # The config flag reports the missing file itself.
    return os.path.join(directory, name) + (":" + arg if sep else "")


def resolve_argv(argv: Sequence[str]) -> list[str]:
    """`argv` with the value of `--config` (`--config=V` or `--config V`) resolved."""
    out = list(argv)
    for i, arg in enumerate(out):
        if arg.startswith("--config="):
            out[i] = "--config=" + resolve(arg[len("--config=") :])
        elif arg == "--config" and i + 1 < len(out):
            out[i + 1] = resolve(out[i + 1])
    return out
