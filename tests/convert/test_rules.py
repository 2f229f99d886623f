"""Layout rules: every transform inverts exactly and predicts its shapes; templates; the
streaming safetensors writer."""

from __future__ import annotations

import numpy as np
import pytest

from vit_jax.convert import rules
from vit_jax.convert.errors import ConversionError
from vit_jax.convert.rules import Entry, Rule, Template
from vit_jax.convert.tensors import InMemory, write_safetensors

SHAPES = {
    rules.IDENTITY: (3, 5),
    rules.CONV: (7, 7, 3, 64),
    rules.DENSE: (32, 64),
    rules.HEADS_IN: (32, 4, 8),
    rules.HEADS_BIAS: (4, 8),
    rules.HEADS_OUT: (4, 8, 32),
}


@pytest.mark.parametrize("transform", list(SHAPES), ids=lambda t: t.name)
def test_transforms_invert_and_predict_shapes(transform):
    x = np.random.default_rng(0).normal(size=SHAPES[transform]).astype(np.float32)
    y = transform.to_torch(x)
    assert y.shape == transform.torch_shape(x.shape)
    back = transform.from_torch(np.ascontiguousarray(y), 4)
    assert back.shape == transform.published_shape(y.shape, 4) == x.shape
    assert back.tobytes() == x.tobytes()


def test_heads_in_matches_torch_linear_semantics():
    """Linear(x) with the converted weight equals the published einsum 'bd,dhk->bhk'."""
    rng = np.random.default_rng(0)
    kernel, x = rng.normal(size=(32, 4, 8)), rng.normal(size=(3, 32))
    linear = x @ rules.HEADS_IN.to_torch(kernel).T  # [B, H*K]
    np.testing.assert_allclose(linear.reshape(3, 4, 8), np.einsum("bd,dhk->bhk", x, kernel))


def test_fused_rule_splits_back():
    rule = Rule(("q", "k", "v"), "qkv", rules.HEADS_BIAS)
    parts = [np.full((2, 3), i, np.float32) for i in range(3)]
    fused = rule.to_torch(parts)
    assert fused.shape == rule.torch_shape([(2, 3)] * 3) == (18,)
    assert [p.tolist() for p in rule.from_torch(fused, 2)] == [p.tolist() for p in parts]


def test_template_offsets():
    template = Template("stages.{s-1}.blocks.{u-1}.conv{r}.weight")
    assert template.match("stages.0.blocks.2.conv3.weight") == {"s": 1, "u": 3, "r": 3}
    assert template.format({"s": 1, "u": 3, "r": 3}) == "stages.0.blocks.2.conv3.weight"
    assert template.match("stages.0.blocks.2.conv3.bias") is None


def test_unmapped_and_incomplete_keys_are_reported():
    table = (Entry(("a/{i}/q", "a/{i}/k"), "fused.{i}"),)
    with pytest.raises(ConversionError, match="no place in the X layout: other"):
        rules.rules_from_published(["a/0/q", "a/0/k", "other"], table, target="X")
    with pytest.raises(ConversionError, match="has a/1/q but not a/1/k"):
        rules.rules_from_published(["a/1/q"], table, target="X")


def test_streamed_safetensors_read_back(tmp_path):
    from safetensors import safe_open

    rng = np.random.default_rng(0)
    arrays = {"w": rng.normal(size=(3, 5)).astype(np.float32), "b": np.arange(7, dtype=np.float64)}
    table = [Rule(("w",), "weight", rules.DENSE), Rule(("b",), "bias", rules.IDENTITY)]
    write_safetensors(tmp_path / "x.safetensors", InMemory(arrays), table, metadata={"k": "v"})
    with safe_open(str(tmp_path / "x.safetensors"), framework="np") as f:
        assert f.metadata() == {"k": "v"}
        np.testing.assert_array_equal(f.get_tensor("weight"), arrays["w"].T)
        np.testing.assert_array_equal(f.get_tensor("bias"), arrays["b"])
    assert not (tmp_path / "x.safetensors.partial").exists()


def test_safetensors_reader_widens_bfloat16_and_rejects_truncation(tmp_path):
    import ml_dtypes

    from vit_jax.convert.tensors import SafetensorsFiles

    values = np.array([[1.5, -2.0], [3.25, 1e-3]], np.float32)
    arrays = {"x": values.astype(ml_dtypes.bfloat16)}
    path = tmp_path / "bf16.safetensors"
    write_safetensors(path, InMemory(arrays), [Rule(("x",), "x", rules.IDENTITY)], progress=False)
    source = SafetensorsFiles([path])
    assert source.shapes() == {"x": (2, 2)} and source.dtype("x") == np.float32
    np.testing.assert_array_equal(source.get("x"), arrays["x"].astype(np.float32))

    path.write_bytes(path.read_bytes()[:-2])
    with pytest.raises(ConversionError, match="truncated"):
        SafetensorsFiles([path])
