"""`vit_jax.figures`: the numbers behind Figure 7's three panels, and the CLI that writes them.

The data tests build models whose answer is known: embedding filters along chosen directions,
smooth position embeddings, attention made uniform. (The session's trained digits model, one
layer and 300 steps, has neither learned local position embeddings nor depth to compare.)
"""

from __future__ import annotations

import itertools
import math

import jax
import numpy as np
import pytest
from PIL import Image

from tests.models import tiny
from vit_jax import figures

GRID = 4  # Every tiny model below sees a 4x4 grid of patches.


def _params(kind: str):
    model, size = tiny.build(kind)
    return tiny.random_params(model, size)


def test_filter_components_are_the_filters_main_directions():
    """Filters spread along a red vertical edge, less along a random pattern: the first two
    components are those patterns, laid out [P, P, RGB] as the filters are."""
    params = _params("token")
    rng = np.random.default_rng(0)
    edge = np.zeros((4, 4, 3))
    edge[:, :2, 0], edge[:, 2:, 0] = 1.0, -1.0  # Red: + on the left half, - on the right.
    edge /= np.linalg.norm(edge)
    other = rng.normal(size=(4, 4, 3))
    other -= np.sum(other * edge) * edge
    other /= np.linalg.norm(other)
    width = params["embedding"]["kernel"].shape[-1]
    filters = (
        np.multiply.outer(edge, rng.normal(0, 10, width))
        + np.multiply.outer(other, rng.normal(0, 3, width))
        + rng.normal(0, 0.01, (4, 4, 3, width))
    )  # [P, P, 3, D]
    params["embedding"]["kernel"] = filters.astype(np.float32)
    data = figures.figure7_data(params, num_random=1)
    assert data.components.shape == (figures.NUM_COMPONENTS, 4, 4, 3)
    assert abs(np.sum(data.components[0] * edge)) > 0.999
    assert abs(np.sum(data.components[1] * other)) > 0.99
    assert data.explained[0] > 0.8 and data.explained[:2].sum() > 0.999
    assert np.all(np.diff(data.explained) <= 0)


def test_hybrid_has_no_rgb_filter_panel():
    data = figures.figure7_data(_params("hybrid_root"), num_random=1)
    assert data.components is None and data.explained is None
    assert "64-channel ResNet features" in data.not_applicable
    panels = figures.figure7(_params("hybrid_root"), num_random=1)
    assert set(panels) == set(figures.FILENAMES)  # The left panel says why instead.


def test_position_similarity_peaks_on_each_patch_and_falls_with_distance():
    """Smooth embeddings, rows weighted over columns: each patch's map peaks at the patch
    itself and falls off along rows and columns, faster across rows."""
    params = _params("token")
    freqs = 0.1 * np.arange(1, 9)  # At most 0.8 rad per patch: cosines fall over 3 patches.
    rows, cols = np.divmod(np.arange(GRID * GRID), GRID)  # Row-major patch order.
    posemb = np.concatenate(
        [
            np.cos(np.outer(rows, freqs)),
            np.sin(np.outer(rows, freqs)),
            0.5 * np.cos(np.outer(cols, freqs)),
            0.5 * np.sin(np.outer(cols, freqs)),
        ],
        axis=1,
    )  # [16, 32]
    class_token = np.full((1, 32), 5.0)  # Unlike any patch: the figure must leave it out.
    stored = np.concatenate([class_token, posemb])[None].astype(np.float32)
    params["Transformer"]["posembed_input"]["pos_embedding"] = stored
    similarity = figures.figure7_data(params, num_random=1).similarity
    assert similarity.shape == (GRID, GRID, GRID, GRID)
    for i, j in itertools.product(range(GRID), repeat=2):
        tile = similarity[i, j]  # The map for the patch in row i, column j.
        assert np.unravel_index(np.argmax(tile), tile.shape) == (i, j)
        assert tile[i, j] == pytest.approx(1.0, abs=1e-6)
        assert np.all(np.diff(tile[i, j:]) < 0) and np.all(np.diff(tile[i:, j], axis=0) < 0)
        assert np.all(np.diff(tile[i, : j + 1]) > 0) and np.all(np.diff(tile[: i + 1, j]) > 0)
    assert similarity[0, 0, 1, 0] < similarity[0, 0, 0, 1]  # Rows differ more than columns.


@pytest.mark.parametrize(("kind", "stride"), [("token", 4), ("gap", 4), ("hybrid_root", 8)])
def test_uniform_attention_has_the_mean_patch_distance(kind, stride):
    """With zero query projections every logit is 0, so each patch attends to all patches
    evenly (the class token left out): every head of every layer gets the mean distance
    between patch centres, in input pixels (hybrids: the ResNet stem's stride times the
    patch size)."""
    params = jax.tree_util.tree_map_with_path(
        lambda path, leaf: 0 * leaf if "'query'" in jax.tree_util.keystr(path) else leaf,
        _params(kind),
    )
    data = figures.figure7_data(params, num_random=3)
    centres = [(stride * r, stride * c) for r in range(GRID) for c in range(GRID)]
    expected = np.mean([math.dist(a, b) for a in centres for b in centres])
    assert data.distances.shape == (tiny.TRANSFORMER["num_layers"], tiny.TRANSFORMER["num_heads"])
    np.testing.assert_allclose(data.distances, expected, rtol=1e-5)
    assert data.note.startswith("averaged over 3 random-noise images")


def test_cli_writes_three_readable_pngs(capsys, token_ckpt, image_dir, tmp_path):
    code = figures.main([token_ckpt, str(tmp_path), "--images", str(image_dir / "rgb.png")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.splitlines() == [f"wrote {tmp_path / n}" for n in figures.FILENAMES.values()]
    sizes = {}
    for key, name in figures.FILENAMES.items():
        with Image.open(tmp_path / name) as png:
            assert png.format == "PNG"
            sizes[key] = png.size
    width, height = sizes["embedding_filters"]
    assert width > 600 and height > 400  # 4 rows of 7 components at 100 dpi.
    width, height = sizes["position_embeddings"]
    assert width > 500 and height > 450
    width, height = sizes["attention_distance"]
    assert width > 500 and height > 350


def test_bad_checkpoint_is_one_message(capsys, tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"\x80\x04junk")
    assert figures.main([str(bad), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Error: ") and str(bad) in err and "Traceback" not in err
