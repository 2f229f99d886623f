"""Pure key mapping: flatten/unflatten, linen -> published names, GroupNorm reshapes."""

import numpy as np
import pytest

from vit_jax.checkpoint import layout


def test_flatten_unflatten_round_trip(vit_params):
    flat = layout.flatten(vit_params)
    assert "Transformer/encoderblock_1/MultiHeadDotProductAttention_1/query/kernel" in flat
    rebuilt = layout.unflatten(flat)
    assert layout.flatten(rebuilt).keys() == flat.keys()
    assert all(rebuilt["embedding"][k] is vit_params["embedding"][k] for k in ("kernel", "bias"))


def test_unflatten_rejects_array_that_is_also_a_group():
    with pytest.raises(ValueError, match="both an array and a group"):
        layout.unflatten({"a/b": np.zeros(1), "a": np.zeros(1)})


@pytest.mark.parametrize(
    ("linen", "published"),
    [
        (
            "Transformer/encoderblock_3/LayerNorm_0/scale",
            "Transformer/encoderblock_3/LayerNorm_0/scale",
        ),
        (
            "Transformer/encoderblock_0/MultiHeadDotProductAttention_0/out/kernel",
            "Transformer/encoderblock_0/MultiHeadDotProductAttention_1/out/kernel",
        ),
        (
            "Transformer/encoderblock_11/LayerNorm_1/bias",
            "Transformer/encoderblock_11/LayerNorm_2/bias",
        ),
        (
            "Transformer/encoderblock_2/MlpBlock_0/Dense_1/kernel",
            "Transformer/encoderblock_2/MlpBlock_3/Dense_1/kernel",
        ),
        ("Transformer/encoder_norm/scale", "Transformer/encoder_norm/scale"),
        ("head/kernel", "head/kernel"),
    ],
)
def test_linen_names_map_to_published(linen, published):
    tree = layout.to_model({linen: np.zeros(2)})
    assert list(layout.flatten(tree)) == [published]


def test_mixed_layouts_are_rejected():
    stored = {
        "Transformer/encoderblock_0/LayerNorm_1/scale": np.zeros(2),
        "Transformer/encoderblock_0/LayerNorm_2/scale": np.zeros(2),
    }
    with pytest.raises(ValueError, match="mixes the published and linen layouts"):
        layout.to_model(stored)


@pytest.mark.parametrize(
    ("key", "is_gn"),
    [
        ("gn_root/scale", True),
        ("block1/unit2/gn3/bias", True),
        ("block4/unit1/gn_proj/scale", True),
        ("block1/unit1/conv1/kernel", False),
        ("Transformer/encoder_norm/scale", False),
        ("Transformer/encoderblock_0/LayerNorm_0/scale", False),
    ],
)
def test_group_norm_params_are_recognised(key, is_gn):
    assert layout.is_group_norm_param(key) is is_gn


def test_group_norm_shapes_published_and_model(hybrid_params):
    published = layout.to_published(hybrid_params)
    gn_keys = [k for k in published if layout.is_group_norm_param(k)]
    assert len(gn_keys) == 2 * (1 + 4 + 4)  # root, and gn1-3 + gn_proj in each of two units.
    for key in gn_keys:
        assert published[key].ndim == 4 and published[key].shape[:3] == (1, 1, 1), key
    others = [k for k in published if not layout.is_group_norm_param(k)]
    assert all(published[k].shape == layout.flatten(hybrid_params)[k].shape for k in others)
    back = layout.flatten(layout.to_model(published))
    for key, value in layout.flatten(hybrid_params).items():
        np.testing.assert_array_equal(back[key], value)
        assert back[key].shape == value.shape
