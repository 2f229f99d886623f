"""load_pretrained: head from init, pre-logits dropped or kept, position embeddings resized,
strict name/shape check, and the result runs in the model at the new resolution."""

import logging

import jax
import ml_collections
import numpy as np
import pytest

from tests.checkpoint import tiny
from vit_jax.checkpoint import CheckpointError, layout, load_pretrained, resize_posemb, save
from vit_jax.models import build_model

POSEMB = "Transformer/posembed_input/pos_embedding"


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, vit_params):
    """A 'pre-trained' tiny ViT file: token classifier, pre-logits 16, 10 classes, 32x32."""
    path = tmp_path_factory.mktemp("pretrained") / "tiny.npz"
    save(vit_params, path)
    return str(path)


def posemb_of(params):
    return params["Transformer"]["posembed_input"]["pos_embedding"]  # [1, N, D]


def finetune(path, config, init_size, num_classes=5, **kwargs):
    init = tiny.init_params(config, num_classes=num_classes, image_size=init_size, seed=1)
    params = load_pretrained(pretrained_path=path, init_params=init, model_config=config, **kwargs)
    return init, params


def apply(config, params, image_size, num_classes=5, *, run=True):
    """Logits at the new resolution; `run=False` only traces the model (no compute, fast)."""
    model = build_model(config, num_classes=num_classes)
    images = np.random.default_rng(0).uniform(-1, 1, (2, *image_size, 3)).astype(np.float32)
    forward = lambda p, x: model.apply({"params": p}, x)
    if not run:
        assert jax.eval_shape(forward, params, images).shape == (2, num_classes)
        return
    logits = jax.jit(forward)(params, images)
    assert logits.shape == (2, num_classes) and np.isfinite(logits).all()


def test_finetune_at_non_square_resolution(pretrained, vit_params, caplog):
    config = tiny.tiny_config()  # representation_size None: pre-logits dropped.
    with caplog.at_level(logging.INFO, logger="vit_jax.checkpoint"):
        init, params = finetune(pretrained, config, (48, 32), image_size=(48, 32))
    flat, flat_init, flat_file = map(layout.flatten, (params, init, vit_params))
    assert flat.keys() == flat_init.keys()
    assert "pre_logits/kernel" not in flat
    assert flat["head/kernel"] is flat_init["head/kernel"]
    assert flat["head/bias"] is flat_init["head/bias"]
    expected = resize_posemb(flat_file[POSEMB], (6, 4), has_class_token=True)
    assert flat[POSEMB].shape == (1, 1 + 6 * 4, 32)
    assert flat[POSEMB].tobytes() == expected.tobytes()
    for key in set(flat) - {"head/kernel", "head/bias", POSEMB}:
        assert flat[key].tobytes() == flat_file[key].tobytes(), key
    assert "resized" in caplog.text and "pre_logits/kernel" in caplog.text
    apply(config, params, (48, 32))


def test_report_says_what_was_loaded(pretrained, vit_params):
    """What a fine-tuning run prints: the file, the new head, the posemb grid a -> b."""
    lines = []
    finetune(pretrained, tiny.tiny_config(), (48, 32), image_size=(48, 32), report=lines.append)
    old = int(np.sqrt(posemb_of(vit_params).shape[1] - 1))  # Square grid plus the class token.
    assert pretrained in lines[0] and "head replaced" in lines[0] and "5 classes" in lines[0]
    assert any(f"from a {old}x{old} to a 6x4 patch grid" in line for line in lines), lines
    assert all(line.startswith("Fine-tuning: ") for line in lines)


@pytest.mark.parametrize("image_size", [None, 48, (48, 48)])
def test_square_grid_and_config_dict(pretrained, vit_params, image_size):
    config = ml_collections.ConfigDict(tiny.tiny_config())  # As configs/ hands it over.
    _, params = finetune(pretrained, config, (48, 48), image_size=image_size)
    expected = resize_posemb(posemb_of(vit_params), (6, 6), has_class_token=True)
    assert posemb_of(params).tobytes() == expected.tobytes()


def test_pre_logits_kept_when_representation_size_is_set(pretrained, vit_params):
    config = tiny.tiny_config(representation_size=16)
    _, params = finetune(pretrained, config, (32, 32))
    for name in ("kernel", "bias"):
        assert params["pre_logits"][name].tobytes() == vit_params["pre_logits"][name].tobytes()
    assert posemb_of(params).tobytes() == posemb_of(vit_params).tobytes()


def test_pre_logits_from_init_when_the_file_has_none(tmp_path, caplog):
    path = tmp_path / "norep.npz"
    save(tiny.init_params(tiny.tiny_config()), path)
    config = tiny.tiny_config(representation_size=16)
    with caplog.at_level(logging.WARNING, logger="vit_jax.checkpoint"):
        init, params = finetune(path, config, (32, 32))
    assert params["pre_logits"]["kernel"] is init["pre_logits"]["kernel"]
    assert "no pre_logits" in caplog.text


def test_gap_classifier_has_no_class_token_slot(tmp_path):
    config = tiny.tiny_config(classifier="gap")
    stored = tiny.init_params(config)
    save(stored, tmp_path / "gap.npz")
    _, params = finetune(tmp_path / "gap.npz", config, (64, 64))
    expected = resize_posemb(posemb_of(stored), (8, 8), has_class_token=False)  # From 16 tokens.
    assert posemb_of(params).tobytes() == expected.tobytes()


def test_hybrid_finetune_fits_the_model(tmp_path, hybrid_params):
    save(hybrid_params, tmp_path / "hybrid.npz")
    config = tiny.TINY_HYBRID
    _, params = finetune(tmp_path / "hybrid.npz", config, (64, 48), image_size=(64, 48))
    assert posemb_of(params).shape == (1, 1 + 8 * 6, 32)
    assert params["gn_root"]["scale"].tobytes() == hybrid_params["gn_root"]["scale"].tobytes()
    apply(config, params, (64, 48), run=False)


def test_scan_layers_model_gets_stacked_params(pretrained, vit_params):
    config = tiny.tiny_config(scan_layers=True)
    init, params = finetune(pretrained, config, (32, 32))
    dense = lambda tree, block: tree["Transformer"][block]["MlpBlock_3"]["Dense_0"]["kernel"]
    stacked = dense(params, "encoderblock")
    assert stacked.shape == dense(init, "encoderblock").shape == (2, 32, 64)
    assert stacked[1].tobytes() == dense(vit_params, "encoderblock_1").tobytes()
    apply(config, params, (32, 32), run=False)


# Errors: CheckpointError naming the file and the offending keys.


def finetune_error(path, config, init_size=(32, 32), **kwargs) -> str:
    with pytest.raises(CheckpointError) as info:
        finetune(path, config, init_size, **kwargs)
    message = str(info.value)
    assert str(path) in message
    return message


def test_shape_mismatch_names_keys_and_shapes(pretrained):
    message = finetune_error(pretrained, tiny.tiny_config(hidden_size=48))
    assert "36 shape mismatches" in message and "and 31 more" in message
    assert "Transformer/encoder_norm/bias (expected (48,), found (32,))" in message
    assert "infer_config" in message  # What to do.


def test_missing_and_extra_arrays(pretrained):
    deeper = tiny.tiny_config(transformer={"num_layers": 3})
    message = finetune_error(pretrained, deeper)
    assert "missing arrays" in message and "Transformer/encoderblock_2/LayerNorm_0/bias" in message
    shallower = tiny.tiny_config(transformer={"num_layers": 1})
    message = finetune_error(pretrained, shallower)
    assert "unexpected arrays" in message and "Transformer/encoderblock_1/" in message


def test_token_checkpoint_into_gap_model(pretrained):
    message = finetune_error(pretrained, tiny.tiny_config(classifier="gap"))
    assert "unexpected arrays: cls" in message


def test_non_square_target_needs_image_size(pretrained):
    assert "image_size=(height, width)" in finetune_error(pretrained, tiny.tiny_config(), (48, 32))


def test_image_size_must_match_init(pretrained):
    message = finetune_error(pretrained, tiny.tiny_config(), (48, 32), image_size=(40, 40))
    assert "5x5 patch grid" in message and "24 patch tokens" in message


def test_missing_pretrained_file(tmp_path):
    assert "does not exist" in finetune_error(tmp_path / "nope.npz", tiny.tiny_config())
