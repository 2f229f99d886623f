"""The trainer's exceptions. Each message says what went wrong and what to do about it."""

from __future__ import annotations


class ConfigError(ValueError):
    """A config value that cannot work (unknown name, bad size, missing setting)."""


class TrainingDivergedError(RuntimeError):
    """The loss or the gradient became NaN or infinite; earlier checkpoints are kept."""


class WorkdirError(RuntimeError):
    """The workdir cannot be used as it is: held by another trainer, out of space, or every
    checkpoint in it damaged. The message names the path, what is wrong and what to do."""
