"""The configs: a locked base defining every key once with a comment, experiment configs
with exactly its keys, and the recipes the issue asks for."""

from __future__ import annotations

import importlib
import inspect
import re

import ml_collections
import pytest

from configs import base, digits, digits_finetune, finetune, vit_b16, vit_b16_pretrain
from vit_jax import data, models


def flat_keys(config: ml_collections.ConfigDict, prefix: str = "") -> set[str]:
    keys = set()
    for key, value in config.items():
        if isinstance(value, ml_collections.ConfigDict):
            keys |= flat_keys(value, f"{prefix}{key}.")
        else:
            keys.add(prefix + key)
    return keys


def not_model(keys: set[str]) -> set[str]:
    """Model sub-configs differ in shape (hybrids have `resnet.*`); checked separately."""
    return {key for key in keys if not key.startswith("model.")}


ALL_CONFIGS = {
    "digits": digits.get_config,
    "digits_finetune": digits_finetune.get_config,
    "vit_b16": vit_b16.get_config,
    "vit_b16_pretrain": vit_b16_pretrain.get_config,
    **{
        f"finetune:{m},{d}": (lambda m=m, d=d: finetune.get_config(f"{m},{d}"))
        for m in ("b16", "l16", "r50_b16", "ViT-H_14")
        for d in finetune.DATASETS
    },
}


def test_base_defines_every_key_once_with_a_comment():
    source = inspect.getsource(base.get_config)
    assignments = re.findall(r"^\s*config\.([\w.]+) = .*$", source, flags=re.M)
    assert len(assignments) == len(set(assignments)), "a key is assigned twice"
    for line in source.splitlines():
        if re.match(r"^\s*config\.[\w.]+ = ", line):
            assert "  # " in line, f"no comment: {line.strip()}"
    config = base.get_config()
    # The data keys come from their one definition, vit_jax/data/config.py (tested there).
    own_keys = set(config.keys()) - set(data.default_config().keys())
    assert own_keys == {key for key in assignments if "." not in key}
    assert "config.update(data.default_config())" in source


def test_base_is_locked():
    config = base.get_config()
    with pytest.raises(AttributeError):
        config.batchsize = 3
    with pytest.raises(AttributeError):
        config.pp.crops = 3


def test_data_keys_are_those_of_vit_jax_data():
    data_keys = flat_keys(data.default_config())
    config = base.get_config()
    assert data_keys <= flat_keys(config)
    assert flat_keys(config.pp) == {key[3:] for key in data_keys if key.startswith("pp.")}


def test_model_keys_are_the_fields_of_vision_transformer():
    fields = set(models.VisionTransformer.__dataclass_fields__) - {"parent", "name", "num_classes"}
    assert set(base.get_config().model.keys()) == fields
    assert set(base.MODEL_EXTRAS) | set(models.get_config("ViT-B_16").keys()) == fields


@pytest.mark.parametrize("name", sorted(ALL_CONFIGS))
def test_every_config_has_exactly_the_base_keys(name):
    config = ALL_CONFIGS[name]()
    assert not_model(flat_keys(config)) == not_model(flat_keys(base.get_config()))
    assert set(config.model.keys()) == set(base.get_config().model.keys())
    models.build_model(
        {**config.model.to_dict(), "dtype": config.model.dtype}, num_classes=10
    )  # A valid model config.
    with pytest.raises(AttributeError):
        config.not_a_key = 1  # Still locked.


def test_vit_b16_is_the_paper_fine_tuning_recipe():
    config = vit_b16.get_config()
    assert config.model.model_name == "ViT-B_16"
    assert config.pretrained_dir == "gs://vit_models/imagenet21k"
    assert (config.dataset, config.pp.crop, config.batch) == ("cifar10", 384, 512)
    assert (config.optimizer, config.momentum, config.weight_decay) == ("sgd", 0.9, 0.0)
    assert (config.grad_norm_clip, config.warmup_steps, config.decay_type) == (1.0, 500, "cosine")
    assert config.total_steps == 10_000
    assert config.loss == "softmax_xent"


def test_finetune_argument():
    config = finetune.get_config("l16,cifar100")
    assert (config.model.model_name, config.dataset) == ("ViT-L_16", "cifar100")
    assert config.model.transformer.dropout_rate == 0.1  # As published for L.
    assert finetune.get_config("r50_b16,oxford_iiit_pet").model.resnet.num_layers == (3, 4, 9)
    assert finetune.get_config("b16,imagenet2012").total_steps == 20_000
    for arg, message in (("b17,cifar10", "Unknown model 'b17'"), ("b16,mnist", "'mnist'")):
        with pytest.raises(ValueError, match=message):
            finetune.get_config(arg)
    assert set(finetune.MODELS.values()) == set(models.MODEL_NAMES)


def test_pretrain_recipe():
    config = vit_b16_pretrain.get_config()
    assert (config.optimizer, config.adam_b1, config.adam_b2) == ("adamw", 0.9, 0.999)
    assert (config.weight_decay, config.batch, config.base_lr) == (0.1, 4096, 1e-3)
    assert (config.warmup_steps, config.decay_type, config.loss) == (
        10_000,
        "linear",
        "sigmoid_xent",
    )
    assert config.model.transformer.dropout_rate == 0.1
    assert (config.model.representation_size, config.model.head_bias_init) == (768, -10.0)
    assert config.pretrained_dir == ""
    large = vit_b16_pretrain.get_config("ViT-H_14").model  # The same recipe, another model.
    assert (large.hidden_size, large.representation_size, large.patches.size) == (
        1280,
        1280,
        (14, 14),
    )


def test_digits_configs():
    scratch, tuned = digits.get_config(), digits_finetune.get_config()
    assert scratch.dataset == tuned.dataset == "digits"
    assert scratch.pretrained_dir == "" and scratch.save_npz == "ViT-digits.npz"
    assert tuned.pretrained_dir == "workdirs/digits"
    assert tuned.model.model_name == scratch.model.model_name
    assert tuned.pp.crop != scratch.pp.crop  # Fine-tuning at another resolution.
    assert digits_finetune.get_config("/elsewhere").pretrained_dir == "/elsewhere"


def test_config_modules_document_their_command():
    for name in ("digits", "digits_finetune", "finetune", "vit_b16", "vit_b16_pretrain"):
        doc = importlib.import_module(f"configs.{name}").__doc__
        assert "python -m vit_jax.train --config configs/" in doc, name
