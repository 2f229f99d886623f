"""The one exception of the convert package."""

from __future__ import annotations

from vit_jax.errors import VitJaxError


class ConversionError(VitJaxError, ValueError):
    """A checkpoint that cannot be converted as asked; the message says why and what to do."""
