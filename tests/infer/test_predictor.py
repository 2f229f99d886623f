"""Predictor: top-k, probabilities, batching, multi-label heads and rollout maps."""

from __future__ import annotations

import itertools

import jax
import numpy as np
import pytest

from tests.models import tiny
from vit_jax import checkpoint, models
from vit_jax.inference import ImageError, InferenceError, Predictor, attention_rollout


@pytest.fixture(scope="module")
def predictor(token_ckpt):
    return Predictor.from_checkpoint(token_ckpt, batch_size=2)


def test_config_from_checkpoint(predictor):
    assert predictor.image_size == (16, 16) and predictor.grid == (4, 4)
    assert predictor.num_classes == 10 and not predictor.multi_label
    assert predictor.has_class_token and predictor.labels.names is None


def test_top_k_sorted_and_probabilities_match_the_model(predictor, image_dir):
    image = predictor.load(image_dir / "rgb.png")
    logits = predictor.model.apply({"params": predictor.params}, image[None])
    expected = np.asarray(jax.nn.softmax(logits))[0]
    (top,) = predictor.predict(image, top_k=3)
    assert [p.index for p in top] == list(np.argsort(-expected)[:3])
    np.testing.assert_allclose([p.prob for p in top], np.sort(expected)[::-1][:3], rtol=1e-5)
    (every,) = predictor.predict(image, top_k=100)  # Clipped to the 10 classes.
    assert len(every) == 10 and abs(sum(p.prob for p in every) - 1.0) < 1e-5
    assert all(a.prob >= b.prob for a, b in itertools.pairwise(every))


def test_batches_are_padded_and_reassembled(predictor, image_dir):
    names = ["rgb.png", "gray.png", "photo.jpg"]  # 3 images, batch_size 2: chunks 2 + 1.
    together = predictor.probabilities([image_dir / n for n in names])
    alone = np.concatenate([predictor.probabilities(image_dir / n) for n in names])
    assert together.shape == (3, 10)
    np.testing.assert_allclose(together, alone, atol=1e-6)


def test_rollout_matches_the_model_intermediates(predictor, image_dir):
    image = predictor.load(image_dir / "rgb.png")
    heatmap = predictor.attention_rollout(image)
    assert heatmap.shape == (4, 4)
    _, state = predictor.model.apply(
        {"params": predictor.params}, image[None], mutable=["intermediates"]
    )
    expected = attention_rollout(models.attention_weights(state["intermediates"]), True, (4, 4))
    np.testing.assert_allclose(heatmap, expected[0], atol=1e-6)
    assert 0.0 < heatmap.sum() < 1.0  # The class token keeps part of its own share.


def test_gap_rollout_sums_to_one(gap_ckpt, image_dir):
    gap = Predictor.from_checkpoint(gap_ckpt)
    assert not gap.has_class_token
    np.testing.assert_allclose(gap.attention_rollout(image_dir / "rgb.png").sum(), 1.0, atol=1e-5)


def test_multi_label_heads_use_sigmoid(image_dir):
    model, size = tiny.build("token", num_classes=21843)
    params = tiny.random_params(model, size)
    predictor = Predictor(params)  # ImageNet-21k head: sigmoid, builtin labels looked up.
    assert predictor.multi_label and predictor.labels.note  # TFDS ships no 21k names.
    image = predictor.load(image_dir / "rgb.png")
    logits = np.asarray(model.apply({"params": params}, image[None]))[0]
    expected = 1 / (1 + np.exp(-logits))
    np.testing.assert_allclose(predictor.probabilities(image)[0], expected, rtol=1e-5, atol=1e-6)
    assert not Predictor(params, labels=None, multi_label=False).multi_label


def test_bad_inputs(predictor, token_ckpt):
    with pytest.raises(ImageError, match=r"\[16, 16, 3\]"):
        predictor.predict(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(InferenceError, match="top_k"):
        predictor.predict(np.zeros((16, 16, 3), np.float32), top_k=0)
    params = checkpoint.load(token_ckpt)
    params.pop("head")
    headless = Predictor(params, source="headless.npz")
    assert headless.attention_rollout(np.zeros((16, 16, 3), np.float32)).shape == (4, 4)
    with pytest.raises(InferenceError, match=r"headless\.npz has no classification head"):
        headless.predict(np.zeros((16, 16, 3), np.float32))
    params = checkpoint.load(token_ckpt)
    block = params["Transformer"]["encoderblock_1"]["MlpBlock_3"]["Dense_0"]
    block["bias"] = block["bias"][:-1]
    with pytest.raises(checkpoint.CheckpointError, match=r"broken\.npz does not match"):
        Predictor(params, source="broken.npz")
