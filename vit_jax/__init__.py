"""vit_jax: the Vision Transformer in JAX/Flax, with published checkpoints, sharded training,
input pipelines, PyTorch conversion and inference."""

import os as _os

# TensorFlow (used only for tf.data and gfile) logs C++ start-up banners to stderr on import;
# keep the user's console for our own messages unless they asked for TF's.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
