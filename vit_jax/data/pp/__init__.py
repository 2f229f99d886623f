"""Preprocessing: a registry of small tf ops parsed from strings like `decode|flip_lr`.

Importing this package registers every op (image, label and RandAugment).
"""

from vit_jax.data.pp import image_ops, label_ops, randaug  # noqa: F401  (registers the ops)
from vit_jax.data.pp.registry import RNG_KEY, Op, parse, register, take_seed

__all__ = ["RNG_KEY", "Op", "parse", "register", "take_seed"]
