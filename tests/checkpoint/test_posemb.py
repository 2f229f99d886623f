"""Position-embedding resize: equal to scipy.ndimage.zoom(order=1) and to a hand formula."""

import numpy as np
import pytest
import scipy.ndimage

from vit_jax.checkpoint import resize_posemb


def random_posemb(grid: int, has_class_token: bool, width: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(1, has_class_token + grid * grid, width)).astype(np.float32)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (7, (14, 14)),  # Square up (224 -> 448 at /16).
        (24, (14, 14)),  # Square down.
        (14, (24, 14)),  # Non-square, 384x224 at /16.
        (14, (9, 20)),  # Non-square, one side down, one up.
        (5, (1, 3)),  # Degenerate: a single row.
        (1, (3, 2)),  # Degenerate: from a single token.
    ],
)
@pytest.mark.parametrize("has_class_token", [True, False])
def test_matches_scipy_zoom(old, new, has_class_token):
    posemb = random_posemb(old, has_class_token)
    resized = resize_posemb(posemb, new, has_class_token=has_class_token)
    gh, gw = new
    assert resized.shape == (1, has_class_token + gh * gw, posemb.shape[-1])
    assert resized.dtype == posemb.dtype
    grid = posemb[0, int(has_class_token) :].reshape(old, old, -1)
    expected = scipy.ndimage.zoom(grid, (gh / old, gw / old, 1), order=1)
    assert expected.shape == (gh, gw, posemb.shape[-1])
    np.testing.assert_allclose(
        resized[0, int(has_class_token) :].reshape(gh, gw, -1), expected, rtol=0, atol=1e-6
    )
    if has_class_token:
        assert resized[0, 0].tobytes() == posemb[0, 0].tobytes()  # Untouched, bit for bit.


def test_independent_formula():
    """Corners aligned: output i reads input coordinate i * (n_in - 1) / (n_out - 1)."""
    grid = np.array([[0.0, 10.0], [20.0, 30.0]])  # [2, 2], value = 20 * row + 10 * col.
    posemb = grid.reshape(1, 4, 1)
    resized = resize_posemb(posemb, (3, 5), has_class_token=False).reshape(3, 5)
    rows = np.arange(3)[:, None] * (1 / 2)  # Input row coordinate of each output row.
    cols = np.arange(5)[None, :] * (1 / 4)
    np.testing.assert_allclose(resized, 20 * rows + 10 * cols, atol=1e-12)
    assert resized[0, 0] == 0 and resized[-1, -1] == 30  # Corners are copied.


def test_same_grid_is_an_unchanged_copy():
    posemb = random_posemb(4, True)
    resized = resize_posemb(posemb, (4, 4), has_class_token=True)
    assert resized is not posemb and resized.tobytes() == posemb.tobytes()


def test_non_square_old_grid_is_an_error():
    posemb = random_posemb(4, True)  # 17 tokens; without the class token 17 is not square.
    with pytest.raises(ValueError, match="square grid"):
        resize_posemb(posemb, (5, 5), has_class_token=False)


def test_bad_shapes_are_errors():
    with pytest.raises(ValueError, match=r"\[1, N, D\]"):
        resize_posemb(np.zeros((17, 6)), (5, 5), has_class_token=True)
    with pytest.raises(ValueError, match="positive"):
        resize_posemb(random_posemb(4, True), (0, 5), has_class_token=True)


def test_accepts_jax_arrays():
    import jax.numpy as jnp

    posemb = random_posemb(3, True)
    np.testing.assert_array_equal(
        resize_posemb(jnp.asarray(posemb), (5, 5), True), resize_posemb(posemb, (5, 5), True)
    )
