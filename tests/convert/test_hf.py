"""npz <-> HF transformers with the real library: logits parity, round trips, refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.checkpoint.tiny import assert_trees_identical
from vit_jax import checkpoint
from vit_jax.convert import ConversionError, convert, open_checkpoint

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def _hf_logits(directory, images_nhwc):
    model, info = transformers.ViTForImageClassification.from_pretrained(
        directory, output_loading_info=True
    )
    assert not any(info.values()), info  # No missing, unexpected or mismatched weights.
    with torch.no_grad():
        return model.eval()(torch.from_numpy(images_nhwc).permute(0, 3, 1, 2)).logits.numpy()


@pytest.fixture(scope="module")
def token_hf(tiny_checkpoints, tmp_path_factory):
    tiny = tiny_checkpoints("token")
    directory = tmp_path_factory.mktemp("hf") / "token"
    convert(tiny.npz, str(directory), "hf", progress=False)
    return tiny, directory


def test_logits_equal_ours(token_hf):
    tiny, directory = token_hf
    np.testing.assert_allclose(_hf_logits(directory, tiny.images), tiny.logits, atol=1e-4, rtol=0)


def test_config_matches_our_numerics(token_hf):
    _, directory = token_hf
    config = transformers.AutoConfig.from_pretrained(directory)
    assert config.hidden_act == "gelu_pytorch_tanh"
    assert config.layer_norm_eps == 1e-6
    assert (config.image_size, config.patch_size, config.num_labels) == (16, 4, 5)
    with open(directory / "preprocessor_config.json") as f:
        assert json.load(f)["image_mean"] == [0.5, 0.5, 0.5]


def test_round_trip_is_bit_identical(token_hf, tmp_path):
    tiny, directory = token_hf
    convert(str(directory), str(tmp_path / "back.npz"), "npz", progress=False)
    assert_trees_identical(checkpoint.load(tmp_path / "back.npz"), tiny.params)
    assert not (tmp_path / "back.labels.txt").exists()  # HF's LABEL_i placeholders are dropped.


def test_model_saved_by_transformers_converts_back(token_hf, tmp_path):
    """What `save_pretrained` writes (transformers 5 renames keys in memory) reads back too."""
    tiny, directory = token_hf
    model = transformers.ViTForImageClassification.from_pretrained(directory)
    model.save_pretrained(tmp_path / "saved")
    convert(str(tmp_path / "saved"), str(tmp_path / "back.npz"), "npz", progress=False)
    assert_trees_identical(checkpoint.load(tmp_path / "back.npz"), tiny.params)


def test_in_memory_key_names_are_accepted(token_hf, tmp_path):
    from safetensors.torch import save_file

    tiny, directory = token_hf
    model = transformers.ViTForImageClassification.from_pretrained(directory)
    (tmp_path / "renamed").mkdir()
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()},
        tmp_path / "renamed" / "model.safetensors",
    )
    (tmp_path / "renamed" / "config.json").write_text((directory / "config.json").read_text())
    convert(str(tmp_path / "renamed"), str(tmp_path / "back.npz"), "npz", progress=False)
    assert_trees_identical(checkpoint.load(tmp_path / "back.npz"), tiny.params)


def test_labels_travel_both_ways(tiny_checkpoints, tmp_path):
    tiny = tiny_checkpoints("token")
    names = ["cat", "dog", "eel", "fox", "gnu"]
    convert(tiny.npz, str(tmp_path / "hf"), "hf", labels=names, progress=False)
    config = transformers.AutoConfig.from_pretrained(tmp_path / "hf")
    assert [config.id2label[i] for i in range(5)] == names
    convert(str(tmp_path / "hf"), str(tmp_path / "m.npz"), "npz", progress=False)
    assert (tmp_path / "m.labels.txt").read_text().split() == names
    # The .labels.txt next to an .npz is picked up without --labels.
    convert(str(tmp_path / "m.npz"), str(tmp_path / "hf2"), "hf", progress=False)
    assert transformers.AutoConfig.from_pretrained(tmp_path / "hf2").id2label[4] == "gnu"


def test_wrong_label_count_refused(tiny_checkpoints, tmp_path):
    with pytest.raises(ConversionError, match="2 names but the model has 5 classes"):
        convert(tiny_checkpoints("token").npz, str(tmp_path / "hf"), "hf", labels=["a", "b"])


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("gap", r"'gap' classifier .*--to timm or --to npz"),
        ("pre_logits", r"pre-logits layer .*--to npz"),
        ("hybrid_root", r"ResNet hybrid .*--to timm or --to npz"),
    ],
)
def test_unrepresentable_models_refused(tiny_checkpoints, tmp_path, name, message):
    with pytest.raises(ConversionError, match=message):
        convert(tiny_checkpoints(name).npz, str(tmp_path / "hf"), "hf", progress=False)
    assert not (tmp_path / "hf").exists()


def test_vit_model_pooler_becomes_pre_logits(tiny_checkpoints, tmp_path):
    """A headless `ViTModel` (like google/vit-base-patch16-224-in21k): pooler = pre-logits."""
    tiny = tiny_checkpoints("pre_logits")
    config = transformers.ViTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=16,
        patch_size=4,
        pooler_output_size=24,
    )
    transformers.ViTModel(config).save_pretrained(tmp_path / "vitmodel")
    ckpt = open_checkpoint(str(tmp_path / "vitmodel"))
    shapes = ckpt.tensors.shapes()
    assert shapes["pre_logits/kernel"] == (32, 24) and "head/kernel" not in shapes
    assert shapes.keys() == {k for k in _flat(tiny.params) if not k.startswith("head/")}
    assert any("hidden_act='gelu'" in note for note in ckpt.notes)
    convert(str(tmp_path / "vitmodel"), str(tmp_path / "m.npz"), "npz", progress=False)


def _flat(params):
    from vit_jax.checkpoint import layout

    return layout.flatten(params)


def test_other_model_types_refused(tmp_path):
    (tmp_path / "deit").mkdir()
    (tmp_path / "deit" / "config.json").write_text('{"model_type": "deit"}')
    with pytest.raises(ConversionError, match="'deit' model"):
        open_checkpoint(str(tmp_path / "deit"))
