"""Config, class count and image size recovered from parameter shapes."""

import functools

import jax
import jax.numpy as jnp
import pytest

from tests.checkpoint import tiny
from vit_jax.checkpoint import infer_config, infer_image_size, infer_num_classes, patch_stride
from vit_jax.models import MODEL_NAMES, build_model, get_config, get_model


@functools.cache
def shapes_of(name: str, num_classes: int | None, image_size: int):
    model = get_model(name, num_classes=num_classes)
    images = jnp.zeros((1, image_size, image_size, 3))
    return jax.eval_shape(lambda: model.init(jax.random.key(0), images))["params"]


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_registered_model_round_trips(name):
    shapes = shapes_of(name, 1000, 224)
    config = infer_config(shapes)
    assert config.to_dict() == get_config(name).to_dict()
    assert infer_num_classes(shapes) == 1000
    assert infer_image_size(shapes, config) == (224, 224)


@pytest.mark.parametrize(
    "name",
    ["ViT-B_16", "ViT-S_32-gap-norep", "R50+ViT-B_16"],
)
def test_image_size_at_384(name):
    shapes = shapes_of(name, None, 384)
    assert infer_num_classes(shapes) is None
    assert infer_image_size(shapes, infer_config(shapes)) == (384, 384)


def test_representation_size_comes_from_pre_logits():
    model = get_model("ViT-B_32", num_classes=21843, representation_size=768)
    shapes = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, 224, 224, 3)))["params"]
    )
    config = infer_config(shapes)
    assert config.model_name == "ViT-B_32" and config.representation_size == 768
    assert infer_num_classes(shapes) == 21843


@pytest.mark.parametrize(
    ("config", "image_size"),
    [
        (tiny.tiny_config(representation_size=16), (32, 32)),
        (tiny.tiny_config(classifier="gap", patches={"size": (4, 8)}), (32, 64)),  # 8x8 grid.
        (tiny.TINY_HYBRID, (32, 32)),
    ],
)
def test_unregistered_architecture(config, image_size):
    params = tiny.init_params(config, num_classes=7, image_size=image_size)
    inferred = infer_config(params)
    assert inferred.model_name is None
    assert inferred.to_dict() == {**config, "model_name": None}
    assert infer_num_classes(params) == 7
    assert infer_image_size(params, inferred) == image_size
    # The inferred config builds a model with exactly these shapes.
    rebuilt = tiny.init_params(inferred, num_classes=7, image_size=image_size)
    assert jax.tree.map(lambda x: x.shape, rebuilt) == jax.tree.map(lambda x: x.shape, params)


def test_patch_stride():
    assert patch_stride(get_config("ViT-B_16")) == (16, 16)
    assert patch_stride(get_config("R50+ViT-B_16")) == (16, 16)  # Stem /16, 1x1 patches.
    assert patch_stride(get_config("R26+ViT-S_32")) == (32, 32)
    assert patch_stride(get_config("R+ViT-Ti_16")) == (32, 32)  # Root /4, 8x8 patches.
    assert patch_stride(tiny.TINY_HYBRID) == (8, 8)


def test_non_square_grid_has_no_image_size():
    params = tiny.init_params(tiny.tiny_config(), image_size=(32, 64))  # 4x8 grid.
    with pytest.raises(ValueError, match="square grid"):
        infer_image_size(params, infer_config(params))


def test_not_a_vit_tree():
    with pytest.raises(ValueError, match="Not a ViT parameter tree"):
        infer_config({"conv1": {"kernel": jnp.zeros((3, 3, 3, 8))}})


def test_model_builds_from_inferred_config():
    shapes = shapes_of("ViT-S_16-gap-norep", 1000, 224)
    model = build_model(infer_config(shapes), num_classes=infer_num_classes(shapes))
    assert model.classifier == "gap" and model.hidden_size == 384


def test_scan_layers_tree():
    model = get_model("ViT-B_16", num_classes=10, scan_layers=True)
    shapes = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, 224, 224, 3)))["params"]
    )
    assert "encoderblock" in shapes["Transformer"]
    assert infer_config(shapes).to_dict() == get_config("ViT-B_16").to_dict()
