"""vit_jax: the Vision Transformer in JAX/Flax, with published checkpoints, sharded training,
input pipelines, PyTorch conversion and inference."""

from vit_jax.cli import quiet as _quiet

# TensorFlow (used only for tf.data and gfile) logs C++ start-up banners to stderr on import;
# keep the user's console for our own messages unless they asked for TF's.
_quiet.install()

__version__ = "0.1.0"
