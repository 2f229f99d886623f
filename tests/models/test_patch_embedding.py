"""The patch embedding as a matmul over flattened patches equals the published strided
convolution, parameters and initialisation included."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vit_jax.models.patch_embedding import PatchEmbedding, patchify


def _conv(features, patch):
    return nn.Conv(features, kernel_size=patch, strides=patch, padding="VALID", name="embedding")


@pytest.mark.parametrize(
    ("image_shape", "patch"),
    [
        ((2, 32, 32, 3), (16, 16)),
        ((1, 35, 21, 3), (8, 4)),  # Not whole patches: the remainder is dropped (VALID).
        ((2, 5, 7, 6), (1, 1)),  # The hybrids' 1x1 patches over a feature map.
    ],
)
def test_equals_the_strided_convolution(image_shape, patch):
    images = jax.random.normal(jax.random.key(0), image_shape)
    ours, conv = PatchEmbedding(12, patch), _conv(12, patch)
    params = ours.init(jax.random.key(1), images)["params"]
    conv_params = conv.init(jax.random.key(1), images)["params"]
    # Same names, shapes and initial values as nn.Conv's (the published layout).
    assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, conv_params)
    np.testing.assert_array_equal(params["kernel"], conv_params["kernel"])
    params = {**params, "bias": jax.random.normal(jax.random.key(2), (12,))}
    got = ours.apply({"params": params}, images)
    want = conv.apply({"params": params}, images)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_patchify_order_matches_the_kernel_layout():
    """Patch (i, j) flattened row by row, channels innermost."""
    images = jnp.arange(1 * 4 * 6 * 2).reshape(1, 4, 6, 2)
    patches = patchify(images, (2, 3))  # [1, 2, 2, 12]
    assert patches.shape == (1, 2, 2, 12)
    np.testing.assert_array_equal(patches[0, 1, 0], np.asarray(images[0, 2:4, 0:3]).ravel())


def test_bfloat16_output_is_float32():
    images = jnp.ones((1, 8, 8, 3), jnp.bfloat16)
    model = PatchEmbedding(4, (4, 4), dtype=jnp.bfloat16)
    params = model.init(jax.random.key(0), images)
    assert model.apply(params, images).dtype == jnp.float32
