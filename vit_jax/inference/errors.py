"""The errors of the inference tools. Each message names the offending file and what to do."""

from __future__ import annotations

from vit_jax.errors import VitJaxError


class InferenceError(VitJaxError, ValueError):
    """A user input the inference tools cannot use (image, label file, checkpoint contents)."""


class ImageError(InferenceError):
    """An image that cannot be read: missing, corrupt, not an image, or too large."""


class LabelError(InferenceError):
    """A label set that cannot be used: unreadable, or not one name per class of the head."""
