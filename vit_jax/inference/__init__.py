"""Inference tools: image loading, label names, prediction, attention rollout and figures.

The Python API that notebooks use; `python -m vit_jax.infer` and `vit_jax.figures` are the
command lines built on it.
"""

from vit_jax.inference.errors import ImageError, InferenceError, LabelError
from vit_jax.inference.images import load_image, prepare_image, to_display
from vit_jax.inference.labels import Labels, resolve_labels
from vit_jax.inference.plots import attention_overlay, save_png
from vit_jax.inference.predictor import Prediction, Predictor
from vit_jax.inference.rollout import attention_rollout, rollout_matrix

__all__ = [
    "ImageError",
    "InferenceError",
    "LabelError",
    "Labels",
    "Prediction",
    "Predictor",
    "attention_overlay",
    "attention_rollout",
    "load_image",
    "prepare_image",
    "resolve_labels",
    "rollout_matrix",
    "save_png",
    "to_display",
]
