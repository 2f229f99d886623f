"""A quiet console: the start-up chatter of TensorFlow, TFDS and Orbax kept off it.

TensorFlow writes C++ banners to file descriptor 2 while it imports ("All log messages before
absl::InitializeLog() is called ...", "oneDNN custom operations are on ...", twice, from two
shared libraries); no environment variable stops them, because they are written before
TensorFlow reads its log level. `install()` (run by `vit_jax/__init__.py`) therefore points
descriptor 2 at /dev/null for the duration of `import tensorflow`, whoever imports it first.
Python exceptions raised by that import still reach the console, after the descriptor is back.

`for_command_line()` (run by the CLIs) also lowers TFDS, Orbax and absl's Python logging to
errors and turns off TFDS progress bars: they narrate preparing the offline datasets and
reading checkpoints, which the commands report in their own words.

Setting TF_CPP_MIN_LOG_LEVEL=0 (TensorFlow's own switch) keeps everything.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import logging
import os
import sys
from collections.abc import Iterator

# Python loggers whose INFO/WARNING lines are start-up narration in a command-line run.
_CHATTY_LOGGERS = ("absl", "tensorflow", "tensorflow_datasets", "orbax", "jax._src.xla_bridge")


def _verbose() -> bool:
    return os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0"


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Descriptor 2 (what C/C++ code writes to) goes to /dev/null inside the block."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # No descriptor 2 (some embedded interpreters): nothing to do.
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class _SilentLoader(importlib.abc.Loader):
    """Runs the real loader of `tensorflow` with descriptor 2 silenced."""

    def __init__(self, loader: importlib.abc.Loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        with native_stderr_silenced():
            self._loader.exec_module(module)


class _QuietTensorFlowFinder(importlib.abc.MetaPathFinder):
    """Wraps the loader of the top-level `tensorflow` package, once."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "tensorflow":
            return None
        sys.meta_path.remove(self)  # One import only; also keeps the lookup below from recursing.
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _SilentLoader(spec.loader)
        return spec


def install() -> None:
    """Quiets TensorFlow's import (unless it is already imported or TF_CPP_MIN_LOG_LEVEL=0)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # Its later C++ INFO/WARNING lines.
    if _verbose() or "tensorflow" in sys.modules:
        return
    if not any(isinstance(finder, _QuietTensorFlowFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowFinder())


def for_command_line() -> None:
    """Libraries' narration down to errors, no TFDS progress bars; for `main()` functions."""
    if _verbose():
        return
    for name in _CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.ERROR)
    tfds = sys.modules.get("tensorflow_datasets")  # Not imported here: convert never needs it.
    if tfds is not None:
        tfds.disable_progress_bar()
