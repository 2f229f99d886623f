"""The one definition of how an image becomes a model input at evaluation and inference.

It is the model's input contract, shared by the evaluation pipeline (`vit_jax.data`), the
predictor (`vit_jax.inference`), export and conversion, so it lives with the models: like
them it is free of TensorFlow, so that conversion and export describe it without importing
TensorFlow (`vit_jax.data` and `vit_jax.inference` import it when they load). The op strings
it returns run in `vit_jax.data.pp`.
"""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class EvalPreprocessing:
    """How an image becomes a model input at evaluation and inference: the one definition.

    The evaluation pipeline, the predictor (`vit_jax.inference`), the export metadata and the
    preprocessing configs written by conversion to HF and timm all derive from this, so a
    reported test accuracy and served predictions see the same pixels. The resize is the
    original code's: bilinear `tf.image.resize` without antialiasing, on uint8 pixels rounded
    back to uint8, then [0, 255] -> [-1, 1].
    """

    size: tuple[int, int]  # (height, width) fed to the model.
    central_crop: bool = False  # Resize the short side to size * 8/7, take the centre.

    def image_ops(self) -> str:
        """The ops after decoding: uint8 [h, w, 3] -> float32 [height, width, 3] in [-1, 1]."""
        height, width = self.size
        if self.central_crop:
            if height != width:
                raise ValueError(f"central_crop needs a square size, got {self.size}.")
            resize = f"resize_small({round(height * 8 / 7)})|central_crop({height})"
        else:
            resize = f"resize({height})" if height == width else f"resize(({height}, {width}))"
        return f"{resize}|value_range({VALUE_RANGE[0]}, {VALUE_RANGE[1]})"

    def ops(self) -> str:
        """From encoded image bytes."""
        return f"decode|{self.image_ops()}"

    def describe(self) -> dict[str, Any]:
        """For serving metadata: the op string and what it means."""
        return {
            "ops": self.ops(),
            "size": list(self.size),
            "resize": "bilinear",
            "antialias": False,
            "central_crop": self.central_crop,
            "value_range": list(VALUE_RANGE),
        }

    def hf_image_processor(self) -> dict[str, Any]:
        """`preprocessor_config.json` of HF's ViTImageProcessor closest to this definition.

        HF resizes with PIL, whose bilinear filter antialiases when shrinking, and cannot
        centre-crop in ViTImageProcessor; pixels of large images differ slightly from ours.
        """
        mean, std = _mean_std()
        return {
            "image_processor_type": "ViTImageProcessor",
            "do_resize": True,
            "size": {"height": self.size[0], "width": self.size[1]},
            "resample": 2,  # PIL bilinear.
            "do_rescale": True,
            "rescale_factor": 1 / 255,
            "do_normalize": True,
            "image_mean": mean,
            "image_std": std,
        }

    def timm_data_config(self) -> dict[str, Any]:
        """The data keys of timm's `pretrained_cfg` (timm resizes with antialiasing too)."""
        mean, std = _mean_std()
        return {
            "input_size": [3, *self.size],
            "interpolation": "bilinear",
            "crop_pct": 7 / 8 if self.central_crop else 1.0,
            "crop_mode": "center",
            "mean": mean,
            "std": std,
        }


VALUE_RANGE = (-1, 1)  # What value_range maps 0..255 to.


def _mean_std() -> tuple[list[float], list[float]]:
    """value_range(-1, 1) as torchvision-style normalisation of [0, 1] pixels."""
    low, high = VALUE_RANGE
    std = 1.0 / (high - low)
    return [-low * std] * 3, [std] * 3
