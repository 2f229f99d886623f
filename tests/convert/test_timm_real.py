"""Parity with the real timm: `timm.create_model` on our conversions, and ours on timm's weights.

timm needs torchvision, whose PyPI wheels load only beside torch's CUDA build, so timm does not
import in the main test environment (torch's CPU build) and this module is skipped there with
the reason printed. `.ci/run` builds an environment where it imports (`.ci/timm-env`) and runs
this module again there with VIT_JAX_REQUIRE_TIMM=1, which turns the skip into a failure.
"""

from __future__ import annotations

import json
import os

import jax
import numpy as np
import pytest

from tests.models import tiny as tiny_models
from vit_jax import checkpoint, models
from vit_jax.convert import convert

try:
    import timm
    import torch
except Exception as error:  # ImportError, or torchvision's RuntimeError beside CPU-only torch.
    if os.environ.get("VIT_JAX_REQUIRE_TIMM"):
        raise
    pytest.skip(
        f"timm is not importable here ({type(error).__name__}: {error}); `.ci/run` runs this "
        "module in an environment built by .ci/timm-env",
        allow_module_level=True,
    )

PLAIN_ATOL = 2e-5  # float32 both sides; measured ~2e-6.
# timm's hybrid stem: weights standardised with sqrt(var + 1e-8) and GroupNorm eps 1e-5 where
# the published models use std + 1e-5 and 1e-6. Measured 6e-5 on R50+ViT-B/16.
HYBRID_ATOL = 1e-3


def _ours(npz: str, images: np.ndarray) -> np.ndarray:
    params = checkpoint.load(npz)
    config = checkpoint.infer_config(params)
    model = models.build_model(config, checkpoint.infer_num_classes(params))
    return np.asarray(jax.jit(model.apply)({"params": params}, images))


def _theirs(timm_model: torch.nn.Module, images: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return timm_model.eval()(torch.from_numpy(images).permute(0, 3, 1, 2)).numpy()


def _load_timm_dir(directory: str) -> torch.nn.Module:
    """What the converted directory tells a timm user to do: create from config, load strictly."""
    import safetensors.torch

    with open(os.path.join(directory, "config.json")) as f:
        config = json.load(f)
    model = timm.create_model(config["architecture"], **config["model_args"])
    model.load_state_dict(safetensors.torch.load_file(os.path.join(directory, "model.safetensors")))
    return model


@pytest.mark.parametrize("name", ["token", "gap", "hybrid_root"])
def test_tiny_conversions_match_timm(tiny_checkpoints, name, tmp_path):
    tiny = tiny_checkpoints(name)
    convert(tiny.npz, str(tmp_path / "timm"), "timm", progress=False)
    logits = _theirs(_load_timm_dir(str(tmp_path / "timm")), tiny.images)
    atol = HYBRID_ATOL if name.startswith("hybrid") else PLAIN_ATOL
    np.testing.assert_allclose(logits, tiny.logits, atol=atol, rtol=0)


def test_local_dir_pretrained_loading(tiny_checkpoints, tmp_path):
    """timm's own Hub-directory loader reads our config.json and weights unaided."""
    tiny = tiny_checkpoints("gap")
    convert(tiny.npz, str(tmp_path / "timm"), "timm", progress=False)
    model = timm.create_model(f"local-dir:{tmp_path / 'timm'}", pretrained=True)
    np.testing.assert_allclose(_theirs(model, tiny.images), tiny.logits, atol=PLAIN_ATOL, rtol=0)


@pytest.mark.parametrize(
    ("name", "architecture"),
    [
        ("R50+ViT-B_16", "vit_base_r50_s16_224"),
        ("R26+ViT-S_32", "vit_small_r26_s32_224"),
        ("R+ViT-Ti_16", "vit_tiny_r_s16_p8_224"),
    ],
)
def test_published_hybrids_match_timm(name, architecture, tmp_path):
    """The published hybrid architectures at full size (random weights, small images)."""
    image_size = 64
    model = models.get_model(name, num_classes=5)
    npz = str(tmp_path / "model.npz")
    checkpoint.save(tiny_models.random_params(model, image_size), npz)
    images = tiny_models.random_images(image_size)
    convert(npz, str(tmp_path / "timm"), "timm", progress=False)
    with open(tmp_path / "timm" / "config.json") as f:
        assert json.load(f)["architecture"] == architecture
    logits = _theirs(_load_timm_dir(str(tmp_path / "timm")), images)
    np.testing.assert_allclose(logits, _ours(npz, images), atol=HYBRID_ATOL, rtol=0)


def _randomise(timm_model: torch.nn.Module, seed: int = 0) -> None:
    """Every parameter random (timm initialises biases, norms and some heads to constants)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, value in timm_model.state_dict().items():
            noise = torch.randn(value.shape, generator=generator)
            if "norm" in key and key.endswith("weight"):
                value.copy_(1.0 + 0.1 * noise)
            elif key.endswith("bias"):
                value.copy_(0.1 * noise)
            elif key in ("cls_token", "pos_embed"):
                value.copy_(0.1 * noise)
            else:
                fan_in = int(np.prod(value.shape[1:])) if value.ndim > 1 else 1
                value.copy_(noise / np.sqrt(fan_in))


@pytest.mark.parametrize(
    ("architecture", "args", "atol"),
    [
        ("vit_small_patch16_224", {"depth": 2}, PLAIN_ATOL),
        (
            "vit_small_patch16_224",
            {"depth": 2, "global_pool": "avg", "class_token": False, "fc_norm": False},
            PLAIN_ATOL,
        ),
        ("vit_small_r26_s32_224", {"depth": 2}, HYBRID_ATOL),
    ],
)
@pytest.mark.parametrize("with_config", [True, False])
def test_timm_weights_convert_to_ours(architecture, args, atol, with_config, tmp_path):
    """A timm model's own state dict (timm's key order, dtypes and buffers) -> npz -> ours."""
    from safetensors.torch import save_file

    args = {"img_size": 64, "num_classes": 7, "act_layer": "gelu_tanh", **args}
    timm_model = timm.create_model(architecture, **args)
    _randomise(timm_model)
    directory = tmp_path / "hub"
    directory.mkdir()
    state = {k: v.contiguous() for k, v in timm_model.state_dict().items()}
    save_file(state, str(directory / "model.safetensors"))
    if with_config:  # As in a timm Hub directory; without it the 384-wide S gives 6 heads.
        (directory / "config.json").write_text(
            json.dumps({"architecture": architecture, "model_args": args})
        )
    convert(str(directory / "model.safetensors"), str(tmp_path / "ours.npz"), "npz", progress=False)
    images = tiny_models.random_images(64)
    np.testing.assert_allclose(
        _ours(str(tmp_path / "ours.npz"), images), _theirs(timm_model, images), atol=atol, rtol=0
    )


def test_exact_gelu_timm_model_converts_with_a_note(tmp_path):
    """timm's own checkpoints use exact GELU: converting says so, and the logits stay close."""
    from safetensors.torch import save_file

    args = {"img_size": 32, "num_classes": 3, "depth": 1}
    timm_model = timm.create_model("vit_small_patch16_224", **args)
    _randomise(timm_model)
    save_file(dict(timm_model.state_dict()), str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(
        json.dumps({"architecture": "vit_small_patch16_224", "model_args": args})
    )
    _, notes = convert(
        str(tmp_path / "model.safetensors"), str(tmp_path / "o.npz"), "npz", progress=False
    )
    assert any("act_layer='gelu'" in note for note in notes)
    images = tiny_models.random_images(32)
    difference = np.abs(_ours(str(tmp_path / "o.npz"), images) - _theirs(timm_model, images))
    assert 0 < difference.max() < 1e-2
