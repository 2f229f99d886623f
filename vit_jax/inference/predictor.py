"""`Predictor`: a checkpoint made ready for inference, with one compiled forward per task.

    predictor = Predictor.from_checkpoint('ViT-B_16_imagenet2012.npz')
    predictor.predict(['cat.jpg', 'https://example.com/dog.png'], top_k=5)
    #  -> [[Prediction(index=281, label='n02123045', prob=0.91), ...], [...]]
    heatmap = predictor.attention_rollout('cat.jpg')  # [gh, gw]

The model config, class count and resolution come from the parameter shapes
(`vit_jax.checkpoint.infer_*`). Inputs are padded to a few fixed batch sizes, so the jitted
functions compile once per size and are reused across calls.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from vit_jax import checkpoint, models
from vit_jax.inference.errors import ImageError, InferenceError
from vit_jax.inference.images import load_image, prepare_image
from vit_jax.inference.labels import AUTO, Labels, resolve_labels
from vit_jax.inference.rollout import attention_rollout

IMAGENET21K_CLASSES = 21843  # Multi-label (sigmoid) heads, as trained in the paper.
ImageInput = str | os.PathLike | Image.Image | np.ndarray


@dataclasses.dataclass(frozen=True)
class Prediction:
    """One of the top-k classes of an image: its index, name and probability."""

    index: int
    label: str
    prob: float

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "label": self.label, "prob": self.prob}


def _batch_sizes(count: int, max_batch: int) -> list[int]:
    """Splits `count` images into chunks of `max_batch`; the rest goes in one chunk."""
    full, rest = divmod(count, max_batch)
    return [max_batch] * full + ([rest] if rest else [])


def _padded(size: int, max_batch: int) -> int:
    """The compiled batch size for `size` images: the next power of two, at most `max_batch`."""
    return min(1 << (size - 1).bit_length(), max_batch)


class Predictor:
    """A ViT checkpoint ready for top-k prediction and attention maps.

    Args:
      params: parameter tree in the published layout (e.g. `checkpoint.load(path)`).
      labels: see `resolve_labels`: 'auto' (ImageNet names when the class count matches),
        'imagenet2012', 'imagenet21k', a label file, a list of names, or None for indices.
      multi_label: sigmoid instead of softmax probabilities; default True only for
        ImageNet-21k heads (21843 classes).
      dtype: compute dtype (parameters stay float32).
      batch_size: most images per forward pass.
      source: name of the checkpoint, for messages.
    """

    def __init__(
        self,
        params: Mapping[str, Any],
        *,
        labels: Any = AUTO,
        multi_label: bool | None = None,
        dtype: Any = jnp.float32,
        batch_size: int = 8,
        source: str = "the checkpoint",
    ):
        if batch_size < 1:
            raise InferenceError(f"batch_size must be at least 1; got {batch_size}.")
        self.source = source
        try:
            self.config = checkpoint.infer_config(params)
            self.image_size = checkpoint.infer_image_size(params, self.config)  # (H, W)
        except ValueError as e:
            raise InferenceError(f"{source} cannot be used for inference: {e}") from None
        self.num_classes = checkpoint.infer_num_classes(params)
        self.stride = checkpoint.patch_stride(self.config)  # Input pixels per token (h, w).
        self.grid = (self.image_size[0] // self.stride[0], self.image_size[1] // self.stride[1])
        self.has_class_token = self.config.classifier in models.TOKEN_CLASSIFIERS
        self.model = checkpoint.build_checked(
            params, self.config, self.num_classes, self.image_size, source=source, dtype=dtype
        )
        self.params = jax.device_put(params)
        self.batch_size = batch_size
        self.multi_label = (
            self.num_classes == IMAGENET21K_CLASSES if multi_label is None else multi_label
        )
        self.labels: Labels | None = None
        if self.num_classes is not None:
            self.labels = resolve_labels(labels, self.num_classes)

        activation = jax.nn.sigmoid if self.multi_label else jax.nn.softmax

        def probabilities(params, images):  # [B, H, W, 3] -> [B, C]
            logits = models.micro_batched_apply(self.model, params, images)  # [B, C]
            return activation(logits.astype(jnp.float32))

        def rollout(params, images):  # [B, H, W, 3] -> [B, gh, gw]
            _, state = self.model.apply({"params": params}, images, mutable=["intermediates"])
            attentions = models.attention_weights(state["intermediates"])
            return attention_rollout(attentions, self.has_class_token, self.grid)

        self._probabilities = jax.jit(probabilities)
        self._rollout = jax.jit(rollout)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, **kwargs: Any) -> Predictor:
        """A predictor for the `.npz` at `path` (local, gs:// or https://); see the class."""
        path = os.fspath(path)
        return cls(checkpoint.load(path), source=path, **kwargs)

    # -- Inputs -------------------------------------------------------------------------------

    def load(self, image: ImageInput) -> np.ndarray:
        """One image (path, URL, PIL image, uint8 array, or a model-ready float array) ->
        `[H, W, 3]` float32 in [-1, 1] at the model's resolution."""
        if isinstance(image, jax.Array):
            image = np.asarray(image)
        if isinstance(image, np.ndarray):
            if image.dtype == np.uint8:
                return prepare_image(image, self.image_size, name="uint8 array")
            if image.shape != (*self.image_size, 3):
                raise ImageError(
                    f"Float image arrays must be model-ready, [{self.image_size[0]}, "
                    f"{self.image_size[1]}, 3] in [-1, 1]; got {image.shape}. Use "
                    "vit_jax.inference.load_image or pass a path, PIL image or uint8 array."
                )
            return image.astype(np.float32)
        return load_image(image, self.image_size)

    def load_batch(self, images: ImageInput | Sequence[ImageInput]) -> np.ndarray:
        """Images as `[B, H, W, 3]`: a single image, a sequence, or a `[B, H, W, 3]` array."""
        if isinstance(images, np.ndarray | jax.Array) and images.ndim == 4:
            return np.stack([self.load(image) for image in np.asarray(images)])
        if isinstance(images, str | os.PathLike | Image.Image | np.ndarray | jax.Array):
            images = [images]
        images = list(images)
        if not images:
            raise ImageError("No images given.")
        return np.stack([self.load(image) for image in images])

    def map_batches(self, fn: Callable[..., jax.Array], batch: np.ndarray) -> np.ndarray:
        """Jitted `fn(params, images [b, H, W, 3]) -> [b, ...]` over `batch` `[B, H, W, 3]`.

        Runs in chunks of at most `batch_size`, zero-padded to a power of two so `fn` compiles
        for few shapes; returns numpy `[B, ...]` without the padding.
        """
        outputs, start = [], 0
        for size in _batch_sizes(len(batch), self.batch_size):
            chunk = batch[start : start + size]
            padding = _padded(size, self.batch_size) - size
            if padding:
                chunk = np.concatenate([chunk, np.zeros((padding, *chunk.shape[1:]), chunk.dtype)])
            outputs.append(np.asarray(fn(self.params, chunk))[:size])
            start += size
        return np.concatenate(outputs)

    # -- Outputs ------------------------------------------------------------------------------

    def probabilities(self, images: ImageInput | Sequence[ImageInput]) -> np.ndarray:
        """Class probabilities `[B, C]` (softmax, or sigmoid for multi-label heads)."""
        if self.num_classes is None:
            raise InferenceError(
                f"{self.source} has no classification head (no 'head' arrays), so it cannot "
                "predict classes. Attention maps and figures still work."
            )
        return self.map_batches(self._probabilities, self.load_batch(images))

    def predict(
        self, images: ImageInput | Sequence[ImageInput], top_k: int = 5
    ) -> list[list[Prediction]]:
        """The `top_k` most probable classes of each image, most probable first."""
        if top_k < 1:
            raise InferenceError(f"top_k must be at least 1; got {top_k}.")
        probs = self.probabilities(images)  # [B, C]
        assert self.labels is not None
        k = min(top_k, probs.shape[-1])
        order = np.argsort(-probs, axis=-1, kind="stable")[:, :k]  # [B, k]
        return [
            [Prediction(int(i), self.labels.name(int(i)), float(row[i])) for i in indices]
            for row, indices in zip(probs, order)
        ]

    def attention_rollouts(self, images: ImageInput | Sequence[ImageInput]) -> np.ndarray:
        """Attention-rollout maps `[B, gh, gw]` over the patch grid (see `rollout`)."""
        return self.map_batches(self._rollout, self.load_batch(images))

    def attention_rollout(self, image: ImageInput) -> np.ndarray:
        """The attention-rollout map `[gh, gw]` of one image."""
        return self.attention_rollouts([image])[0]
