"""The timm layout: key names and shapes of real models, logits through an independent PyTorch
forward pass (timm itself is not importable on CPU test machines), round trips, refusals."""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.checkpoint.tiny import assert_trees_identical
from tests.convert import timm_reference
from vit_jax import checkpoint, models
from vit_jax.convert import ConversionError, convert, describe, open_checkpoint, torch_state_dict
from vit_jax.convert.sources import Checkpoint
from vit_jax.convert.tensors import InMemory


def _timm_shapes(name: str, num_classes: int, image_size: int) -> dict[str, tuple[int, ...]]:
    """timm keys and shapes for a registered model, from abstract (never allocated) params."""
    from vit_jax.checkpoint import layout
    from vit_jax.convert import timm
    from vit_jax.convert.rules import rules_from_published

    model = models.get_model(name, num_classes=num_classes)
    images = jax.ShapeDtypeStruct((1, image_size, image_size, 3), jnp.float32)
    params = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), images)["params"]
    shapes = {k: tuple(v.shape) for k, v in layout.flatten(params).items()}
    stages = bool(model.resnet and model.resnet["num_layers"])
    rules = rules_from_published(shapes, timm.table(stages), target="timm")
    return {r.torch: r.torch_shape([shapes[k] for k in r.published]) for r in rules}


def test_vit_base_patch16_key_names_and_shapes():
    shapes = _timm_shapes("ViT-B_16", 1000, 224)
    assert len(shapes) == 152  # len(timm.create_model('vit_base_patch16_224').state_dict())
    assert shapes["cls_token"] == (1, 1, 768)
    assert shapes["pos_embed"] == (1, 197, 768)
    assert shapes["patch_embed.proj.weight"] == (768, 3, 16, 16)
    assert shapes["blocks.11.attn.qkv.weight"] == (2304, 768)
    assert shapes["blocks.11.attn.qkv.bias"] == (2304,)
    assert shapes["blocks.0.attn.proj.weight"] == (768, 768)
    assert shapes["blocks.0.mlp.fc1.weight"] == (3072, 768)
    assert shapes["blocks.0.mlp.fc2.weight"] == (768, 3072)
    assert shapes["norm.weight"] == (768,)
    assert shapes["head.weight"] == (1000, 768)


def test_r50_hybrid_key_names_and_shapes():
    shapes = _timm_shapes("R50+ViT-B_16", 1000, 384)  # timm's vit_base_r50_s16_384
    backbone = {k: v for k, v in shapes.items() if k.startswith("patch_embed.backbone.")}
    # Stem 3 + 16 bottlenecks x 9 + 3 downsamples x 3, as in timm's ResNetV2((3, 4, 9)).
    assert len(backbone) == 156 and len(shapes) == 156 + 152
    assert shapes["patch_embed.backbone.stem.conv.weight"] == (64, 3, 7, 7)
    assert shapes["patch_embed.backbone.stem.norm.weight"] == (64,)
    stage0 = "patch_embed.backbone.stages.0.blocks.0."
    assert shapes[stage0 + "downsample.conv.weight"] == (256, 64, 1, 1)
    assert shapes[stage0 + "conv2.weight"] == (64, 64, 3, 3)
    assert shapes[stage0 + "norm3.bias"] == (256,)
    assert shapes["patch_embed.backbone.stages.1.blocks.0.conv1.weight"] == (128, 256, 1, 1)
    assert shapes["patch_embed.backbone.stages.2.blocks.8.conv3.weight"] == (1024, 256, 1, 1)
    assert "patch_embed.backbone.stages.2.blocks.1.downsample.conv.weight" not in shapes
    assert shapes["patch_embed.proj.weight"] == (768, 1024, 1, 1)
    assert shapes["pos_embed"] == (1, 577, 768)


def test_root_only_hybrid_key_names():
    shapes = _timm_shapes("R+ViT-Ti_16", 1000, 224)  # timm's vit_tiny_r_s16_p8_224
    assert shapes["patch_embed.backbone.conv.weight"] == (64, 3, 7, 7)
    assert shapes["patch_embed.backbone.norm.bias"] == (64,)
    assert shapes["patch_embed.proj.weight"] == (192, 64, 8, 8)
    assert not any(".stem." in key or ".stages." in key for key in shapes)


@pytest.mark.parametrize(
    ("name", "architecture"),
    [
        ("ViT-B_16", "vit_base_patch16_224"),
        ("ViT-H_14", "vit_huge_patch14_224"),
        ("ViT-S_16-gap-norep", "vit_small_patch16_224"),
        ("R50+ViT-B_16", "vit_base_r50_s16_224"),
        ("R26+ViT-S_32", "vit_small_r26_s32_224"),
        ("R50+ViT-L_32", "vit_large_r50_s32_224"),
        ("R+ViT-Ti_16", "vit_tiny_r_s16_p8_224"),
    ],
)
def test_architecture_names(name, architecture):
    from vit_jax.convert import timm

    assert timm.architecture(models.get_config(name)) == architecture


def _timm_dir(tiny_checkpoints, name, tmp_path):
    """Converts tiny model `name` with the CLI's code path; returns its files' contents."""
    from safetensors.numpy import load_file

    tiny = tiny_checkpoints(name)
    written, notes = convert(tiny.npz, str(tmp_path / "timm"), "timm", progress=False)
    with open(os.path.join(tmp_path, "timm", "config.json")) as f:
        config = json.load(f)
    return tiny, load_file(written[0]), config, notes


def _timm_state_dict(tiny):
    """The timm layout alone (no model name: the tiny two-stage hybrid is no timm model)."""
    ckpt = open_checkpoint(tiny.npz)
    return torch_state_dict(ckpt, "timm", describe(ckpt))


@pytest.mark.parametrize(
    ("name", "pool"),
    [("token", "token"), ("gap", "avg"), ("hybrid_root", "token"), ("hybrid", "token")],
)
def test_logits_match_independent_timm_forward(tiny_checkpoints, name, pool):
    tiny = tiny_checkpoints(name)
    logits = timm_reference.forward(
        _timm_state_dict(tiny), tiny.images, num_heads=2, global_pool=pool, timm_numerics=False
    )
    np.testing.assert_allclose(logits, tiny.logits, atol=1e-4, rtol=0)


def test_hybrid_timm_numerics_differ_only_slightly(tiny_checkpoints, tmp_path):
    tiny, state_dict, _, notes = _timm_dir(tiny_checkpoints, "hybrid_root", tmp_path)
    logits = timm_reference.forward(
        state_dict, tiny.images, num_heads=2, global_pool="token", timm_numerics=True
    )
    assert np.abs(logits - tiny.logits).max() < 1e-3  # Measured: ~3e-6 on these weights.
    assert any("GroupNorm eps 1e-5" in note for note in notes)


def test_config_json_creates_the_model(tiny_checkpoints, tmp_path):
    _, state_dict, config, _ = _timm_dir(tiny_checkpoints, "gap", tmp_path)
    assert config["architecture"].startswith("vit_")
    assert config["model_args"] == {
        "img_size": 16,
        "patch_size": 4,
        "embed_dim": 32,
        "depth": 2,
        "num_heads": 2,
        "mlp_ratio": 2.0,
        "num_classes": 5,
        "global_pool": "avg",
        "class_token": False,
        "fc_norm": False,
        "act_layer": "gelu_tanh",
    }
    assert config["pretrained_cfg"]["input_size"] == [3, 16, 16]
    assert config["pretrained_cfg"]["mean"] == [0.5, 0.5, 0.5]
    assert "cls_token" not in state_dict and "norm.weight" in state_dict


@pytest.mark.parametrize("name", ["token", "gap", "hybrid_root"])
def test_round_trip_is_bit_identical(tiny_checkpoints, name, tmp_path):
    tiny = tiny_checkpoints(name)
    convert(tiny.npz, str(tmp_path / "timm"), "timm", progress=False)
    convert(str(tmp_path / "timm"), str(tmp_path / "back.npz"), "npz", progress=False)
    assert_trees_identical(checkpoint.load(tmp_path / "back.npz"), tiny.params)


def test_hybrid_with_stages_round_trip_is_bit_identical(tiny_checkpoints, tmp_path):
    from safetensors.numpy import save_file

    tiny = tiny_checkpoints("hybrid")
    save_file(_timm_state_dict(tiny), str(tmp_path / "hybrid.safetensors"))
    convert(str(tmp_path / "hybrid.safetensors"), str(tmp_path / "back.npz"), "npz", num_heads=2)
    assert_trees_identical(checkpoint.load(tmp_path / "back.npz"), tiny.params)


def test_bare_safetensors_without_config_reads_back(tiny_checkpoints, tmp_path):
    """A timm state dict alone: heads come from the published width table or --num-heads."""
    tiny = tiny_checkpoints("token")
    convert(tiny.npz, str(tmp_path / "timm"), "timm", progress=False)
    bare = tmp_path / "bare" / "weights.safetensors"
    bare.parent.mkdir()
    os.replace(tmp_path / "timm" / "model.safetensors", bare)
    with pytest.raises(ConversionError, match="--num-heads"):
        open_checkpoint(str(bare))
    convert(str(bare), str(tmp_path / "back.npz"), "npz", num_heads=2, progress=False)
    assert_trees_identical(checkpoint.load(tmp_path / "back.npz"), tiny.params)


def test_pth_state_dict_reads_back(tiny_checkpoints, tmp_path):
    import torch

    tiny = tiny_checkpoints("gap")
    state = _timm_state_dict(tiny)
    path = tmp_path / "model.pth"
    torch.save({"state_dict": {k: torch.from_numpy(v) for k, v in state.items()}}, path)
    convert(str(path), str(tmp_path / "back.npz"), "npz", num_heads=2, progress=False)
    assert_trees_identical(checkpoint.load(tmp_path / "back.npz"), tiny.params)


def test_pre_logits_refused(tiny_checkpoints, tmp_path):
    tiny = tiny_checkpoints("pre_logits")
    with pytest.raises(ConversionError, match=r"pre-logits.*--to npz"):
        convert(tiny.npz, str(tmp_path / "timm"), "timm", progress=False)
    assert not (tmp_path / "timm").exists()


def test_unknown_hybrid_backbone_refused(tmp_path):
    model = models.build_model(
        {
            **models.get_config("R50+ViT-B_16").to_dict(),
            "resnet": {"num_layers": (3, 4), "width_factor": 1},
        },
        num_classes=3,
    )
    images = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
    params = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), images)["params"]
    from vit_jax.checkpoint import layout

    flat = {k: np.zeros(v.shape, np.float32) for k, v in layout.flatten(params).items()}
    ckpt = Checkpoint(InMemory(flat), "npz", "mem.npz")
    from vit_jax.convert.targets import write_torch

    with pytest.raises(ConversionError, match=r"stage depths \(3, 4\).*--to npz"):
        write_torch("timm", ckpt, str(tmp_path / "timm"), model=describe(ckpt), progress=False)


def test_fc_norm_checkpoint_refused(tiny_checkpoints, tmp_path):
    _, _, config, _ = _timm_dir(tiny_checkpoints, "gap", tmp_path)
    config["model_args"]["fc_norm"] = True
    with open(tmp_path / "timm" / "config.json", "w") as f:
        json.dump(config, f)
    with pytest.raises(ConversionError, match="fc_norm=True"):
        open_checkpoint(str(tmp_path / "timm"))


def test_unknown_timm_keys_are_named(tiny_checkpoints, tmp_path):
    from safetensors.numpy import save_file

    _, state_dict, _, _ = _timm_dir(tiny_checkpoints, "token", tmp_path)
    state_dict["reg_token"] = np.zeros((1, 4, 32), np.float32)
    save_file(state_dict, str(tmp_path / "extra.safetensors"))
    with pytest.raises(ConversionError, match="reg_token"):
        open_checkpoint(str(tmp_path / "extra.safetensors"), num_heads=2)
