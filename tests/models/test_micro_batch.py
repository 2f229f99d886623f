"""Micro-batched inference gives the logits of one whole-batch `model.apply`."""

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from tests.models import tiny
from vit_jax import models
from vit_jax.models import backend_tuning, micro_batch


@pytest.fixture(scope="module")
def token_model():
    model, image_size = tiny.build("token")
    params = tiny.random_params(model, image_size)
    images = tiny.random_images(image_size, batch=12)
    expected = np.asarray(model.apply({"params": params}, images))
    return model, params, images, expected


@pytest.mark.parametrize(("size", "chunks"), [(4, 3), (5, 2), (1, 12), (12, 1), (100, 1)])
def test_same_logits_for_any_micro_batch(token_model, size, chunks, monkeypatch):
    model, params, images, expected = token_model
    seen = []
    real_map = jax.lax.map
    monkeypatch.setattr(jax.lax, "map", lambda f, xs: seen.append(xs.shape[0]) or real_map(f, xs))
    logits = jax.jit(lambda p, x: models.micro_batched_apply(model, p, x, micro_batch=size))(
        params, images
    )
    np.testing.assert_allclose(logits, expected, atol=1e-5, rtol=1e-5)
    assert seen == ([chunks] if chunks > 1 else [])  # The loop runs only when it splits.


def test_auto_splits_on_cpu_by_tokens():
    """XLA's matmuls (the default library): 800 tokens per micro-batch (backend_tuning, item 2)."""
    assert jax.default_backend() == "cpu"
    assert models.micro_batch_size(197) == 4  # ViT-B/16 at 224.
    assert models.micro_batch_size(577) == 1  # At 384.
    assert models.micro_batch_size(5000) == 1
    assert models.micro_batch_size(17, None) is None
    assert models.micro_batch_size(17, 0) is None
    assert models.micro_batch_size(17, 3) == 3


@pytest.mark.parametrize("library", list(backend_tuning.CUSTOM_CALLS))
def test_auto_splits_larger_for_custom_call_matmuls(library):
    """The custom calls' libraries gain from more rows per call: 3200 tokens (backend_tuning,
    item 2), against XLA's 800."""
    assert jax.default_backend() == "cpu"
    assert models.micro_batch_size(197, "auto", library) == 16  # ViT-B/16 at 224.
    assert models.micro_batch_size(577, "auto", library) == 5  # At 384.
    assert models.micro_batch_size(197, 3, library) == 3  # An int is the user's.


def test_micro_batched_apply_takes_the_micro_batches_of_the_library_auto_picks(
    token_model, monkeypatch
):
    """The model's matmul library, as resolved here, sets the micro-batches: with a budget of
    2 images (XLA) or 6 (a custom call's library) per micro-batch, 12 images run in 6 or 2."""
    import dataclasses

    model, params, images, expected = token_model
    per_image = micro_batch.num_tokens(params)
    cpu = dataclasses.replace(backend_tuning.CPU, micro_batch_tokens=2 * per_image)
    monkeypatch.setattr(backend_tuning, "CPU", cpu)
    monkeypatch.setattr(backend_tuning, "CUSTOM_CALL_TOKENS_PER_MICRO_BATCH", 6 * per_image)
    seen, asked = [], []
    real_map = jax.lax.map
    monkeypatch.setattr(jax.lax, "map", lambda f, xs: seen.append(xs.shape[0]) or real_map(f, xs))
    for library in ("xla", "mkl"):
        # Only the micro-batches' choice is faked: the model (float32) runs XLA's matmuls.
        pick = lambda *args, pick=library: asked.append(args) or pick
        monkeypatch.setattr(micro_batch, "resolve_library", pick)
        logits = models.micro_batched_apply(model, params, images)
        np.testing.assert_allclose(logits, expected, atol=1e-5, rtol=1e-5)
    assert seen == [6, 2]
    # The model's own field and compute dtype.
    assert [(field, np.dtype(dtype)) for field, dtype in asked] == [("auto", np.float32)] * 2


def test_auto_keeps_whole_batches_on_accelerators(monkeypatch):
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert models.micro_batch_size(197) is None
    assert models.micro_batch_size(197, "auto", "onednn") is None


@pytest.mark.parametrize("bad", [-1, 2.5, "4"])
def test_bad_micro_batch_is_refused(bad):
    with pytest.raises(ValueError, match="micro_batch must be"):
        models.micro_batch_size(197, bad)


def test_uneven_shards_are_refused(token_model):
    model, params, images, _ = token_model
    with pytest.raises(ValueError, match="12 images cannot be split evenly over 5"):
        models.micro_batched_apply(model, params, images, micro_batch=2, data_shards=5)


def test_chunks_divide_each_shard():
    assert micro_batch._num_chunks(32, 1, 4) == 8
    assert micro_batch._num_chunks(30, 1, 4) == 6  # 7 does not divide 30: 6 of 5 images.
    assert micro_batch._num_chunks(31, 1, 4) == 1  # Prime: whole batch.
    assert micro_batch._num_chunks(32, 8, 2) == 2  # 4 images per shard, 2 per micro-batch.
    assert micro_batch._num_chunks(8, 8, 4) == 1


def test_sharded_batch_stays_split_over_devices(token_model):
    """Over 8 devices, each micro-batch takes images from every device: same logits, and the
    output keeps the batch sharding."""
    model, params, images, _ = token_model
    images = np.concatenate([images, images[:4]])  # 16 = 8 devices x 2.
    expected = np.asarray(model.apply({"params": params}, images))
    mesh = jax.make_mesh((8,), ("data",))
    batch = NamedSharding(mesh, PartitionSpec("data"))
    forward = jax.jit(
        lambda p, x: models.micro_batched_apply(model, p, x, micro_batch=1, data_shards=8),
        in_shardings=(NamedSharding(mesh, PartitionSpec()), batch),
    )
    logits = forward(params, jax.device_put(images, batch))
    np.testing.assert_allclose(logits, expected, atol=1e-5, rtol=1e-5)
    assert logits.sharding.is_equivalent_to(batch, logits.ndim)


def test_scan_layout_parameters(token_model):
    model, params, images, expected = token_model
    scanned = model.clone(scan_layers=True)
    stacked = models.stack_encoder_blocks(params)
    logits = models.micro_batched_apply(scanned, stacked, images, micro_batch=3)
    np.testing.assert_allclose(logits, expected, atol=1e-5, rtol=1e-5)


def test_variables_dict_is_refused_with_a_hint(token_model):
    model, params, images, _ = token_model
    with pytest.raises(ValueError, match="not the variables dict"):
        models.micro_batched_apply(model, {"params": params}, images)
