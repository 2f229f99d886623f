"""Parameter counts of every published model, and name resolution."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.models import tiny
from vit_jax import models
from vit_jax.errors import ConfigError

# Published figures (1000 classes, 224x224): the first five are quoted by the original project
# and the issue; the rest equal timm's reported counts for the same architectures.
PUBLISHED_COUNTS = {
    "ViT-Ti_16": 5_717_416,
    "ViT-B_16": 86_567_656,
    "ViT-H_14": 632_045_800,
    "R+ViT-Ti_16": 6_337_704,
    "R50+ViT-B_16": 98_659_112,
    "ViT-S_16": 22_050_664,
    "ViT-S_32": 22_878_952,
    "ViT-B_8": 86_576_872,
    "ViT-B_32": 88_224_232,
    "ViT-L_16": 304_326_632,
    "ViT-L_32": 306_535_400,
    "ViT-S_16-gap-norep": 22_049_896,
    "ViT-S_32-gap-norep": 22_878_184,
    "ViT-B_16-gap-norep": 86_566_120,
    "ViT-B_32-gap-norep": 88_222_696,
    "R26+ViT-S_32": 36_431_912,
    "R26+ViT-B_32": 101_383_976,
    "R50+ViT-L_32": 328_994_856,
}


def count_params(name, image_size=224, num_classes=1000):
    model = models.get_model(name, num_classes=num_classes)
    images = jax.ShapeDtypeStruct((1, image_size, image_size, 3), jnp.float32)
    shapes = jax.eval_shape(lambda x: model.init(jax.random.key(0), x)["params"], images)
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(shapes))


def analytic_count(name, image_size=224, num_classes=1000):
    """Counts from the architecture's formulas, independently of the Flax modules."""
    config = models.get_config(name)
    d, t = config.hidden_size, config.transformer
    m, layers = t.mlp_dim, t.num_layers
    channels, stride, stem = 3, 1, 0
    if config.resnet is not None:
        width = 64 * config.resnet.width_factor
        stem += 7 * 7 * 3 * width + 2 * width  # conv_root + gn_root
        channels, stride = width, 4
        for stage, units in enumerate(config.resnet.num_layers):
            f = width * 2**stage
            for unit in range(units):
                stem += channels * f + 9 * f * f + f * 4 * f + 2 * (2 * f) + 2 * 4 * f
                if unit == 0:
                    stem += channels * 4 * f + 2 * 4 * f  # conv_proj + gn_proj
                channels = 4 * f
            stride *= 2 if stage > 0 else 1
    patch = config.patches.size[0]
    tokens = (image_size // (stride * patch)) ** 2 + (config.classifier == "token")
    embed = patch * patch * channels * d + d
    block = 4 * d + 4 * (d * d + d) + (d * m + m + m * d + d)
    return (
        stem
        + embed
        + d * (config.classifier == "token")
        + tokens * d
        + layers * block
        + 2 * d
        + d * num_classes
        + num_classes
    )


def test_table_and_registry_agree():
    assert set(PUBLISHED_COUNTS) == set(models.MODEL_NAMES)


@pytest.mark.parametrize("name", models.MODEL_NAMES)
def test_parameter_count(name):
    assert count_params(name) == PUBLISHED_COUNTS[name] == analytic_count(name)


@pytest.mark.parametrize(
    ("alias", "name"),
    [
        ("B_16", "ViT-B_16"),
        ("Ti_16", "ViT-Ti_16"),
        ("R_Ti_16", "R+ViT-Ti_16"),
        ("R26_S_32", "R26+ViT-S_32"),
        ("R50_L_32", "R50+ViT-L_32"),
        ("B_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.0-sd_0.0", "ViT-B_16"),
        ("gs://vit_models/imagenet21k/R50+ViT-B_16.npz", "R50+ViT-B_16"),
        ("ViT-B_32-gap-norep", "ViT-B_32-gap-norep"),
    ],
)
def test_aliases_resolve(alias, name):
    assert models.resolve_name(alias) == name
    assert models.get_config(alias).model_name == name


def test_unknown_name_suggests_close_matches():
    with pytest.raises(KeyError, match="Did you mean ViT-B_16"):
        models.get_model("ViT-B16")


def test_overrides_update_sub_configs_and_reject_unknown_fields():
    model = models.get_model("ViT-B_16", num_classes=10, transformer={"dropout_rate": 0.1})
    assert model.transformer["dropout_rate"] == 0.1
    assert model.transformer["num_layers"] == 12
    assert model.num_classes == 10
    with pytest.raises(ValueError, match="Unknown transformer fields"):
        models.get_model("ViT-B_16", transformer={"depth": 3})
    with pytest.raises(ValueError, match="Unknown model config fields"):
        models.get_model("ViT-B_16", depth=3)


def test_model_rejects_unknown_transformer_fields_by_name():
    """The model itself, not only `get_model`, refuses a misspelt encoder field."""
    model, image_size = tiny.build("token", transformer={**tiny.TRANSFORMER, "depth": 3})
    images = jnp.zeros((1, image_size, image_size, 3))
    with pytest.raises(ConfigError, match=r"\['depth'\].*'num_layers', 'mlp_dim', 'num_heads'"):
        model.init(jax.random.key(0), images)
