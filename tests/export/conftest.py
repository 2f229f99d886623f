"""Fixtures: tiny published-layout checkpoints."""

from tests.convert.fixtures import tiny_checkpoints

__all__ = ["tiny_checkpoints"]
