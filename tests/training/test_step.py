"""The jitted train step: sharded over 8 devices (data and FSDP) it matches one device, and
gradient accumulation matches one large batch."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tests.models import custom_calls
from tests.training import synthetic
from vit_jax import models, sharding
from vit_jax.models import backend_tuning, onednn_matmul
from vit_jax.training import step
from vit_jax.training.trainer import Trainer

NUM_STEPS = 3
MESH = {"data": 2, "fsdp": 4}  # Batches over all 8 devices, parameters split in 4.


def run_steps(config, devices, mesh_axes, num_steps=NUM_STEPS):
    """Per-step losses, final parameters (NumPy) and final state of synthetic steps."""
    mesh = sharding.make_mesh(mesh_axes, devices)
    trainer = Trainer(config, mesh, synthetic.INFO)
    state = trainer.initial_state()
    batches = synthetic.SyntheticData().make_train_iterator(config, mesh, sharding.DATA_AXES)
    losses = []
    for _ in range(num_steps):
        state, metrics = trainer.train_step(state, next(batches))
        losses.append(float(metrics["train_loss"]))
    return np.array(losses), trainer.host_params(state), state


def assert_trees_close(a, b, **tolerance):
    flat_a, flat_b = jax.tree.leaves_with_path(a), jax.tree.leaves(b)
    assert len(flat_a) == len(flat_b)
    for (path, x), y in zip(flat_a, flat_b):
        np.testing.assert_allclose(x, y, err_msg=jax.tree_util.keystr(path), **tolerance)


@pytest.fixture(scope="module")
def config():
    config = synthetic.tiny_synthetic_config()
    config.optimizer = "sgd"
    config.momentum = 0.9
    config.optim_dtype = "float32"
    return config


@pytest.fixture(scope="module")
def sharded(config):
    assert jax.device_count() == 8
    return run_steps(config, jax.devices(), MESH)


def test_sharded_steps_match_one_device(config, sharded):
    losses, params, state = sharded
    ref_losses, ref_params, _ = run_steps(config, jax.devices()[:1], {"data": 1, "fsdp": 1})
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    assert losses[-1] < losses[0]  # It learns.
    assert_trees_close(params, ref_params, rtol=1e-4, atol=1e-6)

    # Parameters and momentum really are split: [16, 32] kernels keep 32 / 4 columns.
    kernel = state.params["Transformer"]["encoderblock_0"]["MlpBlock_3"]["Dense_0"]["kernel"]
    trace = optax.tree_utils.tree_get(state.opt_state, "trace")  # SGD momentum.
    momentum = trace["Transformer"]["encoderblock_0"]["MlpBlock_3"]["Dense_0"]["kernel"]
    for array in (kernel, momentum):
        assert array.sharding.spec == jax.sharding.PartitionSpec(None, "fsdp")
        assert array.addressable_shards[0].data.shape == (16, 8)


def test_onednn_matmuls_train_sharded_as_xla_ones(config, sharded, monkeypatch):
    """oneDNN's custom call (`matmul_library="onednn"`: the dense layers and the attention's
    products) has no sharding rule: XLA gathers its operands onto every device (not timed).
    The steps are XLA's (`sharded`), and the trainer's model did call oneDNN."""
    custom_calls.require(jnp.float32, "onednn")
    losses, params, _ = sharded
    config = config.copy_and_resolve_references()
    config.model.matmul_library = "onednn"
    dense_calls = []
    dense = onednn_matmul.dense
    monkeypatch.setattr(onednn_matmul, "dense", lambda *args: dense_calls.append(1) or dense(*args))
    got_losses, got_params, _ = run_steps(config, jax.devices(), MESH)
    assert dense_calls  # Traced through oneDNN, not left on XLA.
    np.testing.assert_allclose(got_losses, losses, rtol=1e-5)
    assert_trees_close(got_params, params, rtol=1e-4, atol=1e-6)


def test_gradient_accumulation_equals_large_batch(config, sharded):
    """Two micro-batches of 8 give the update of the batch of 16."""
    config = config.copy_and_resolve_references()
    config.accum_steps = 2
    losses, params, _ = run_steps(config, jax.devices(), MESH)
    np.testing.assert_allclose(losses, sharded[0], rtol=1e-5)
    assert_trees_close(params, sharded[1], rtol=1e-4, atol=1e-6)


def test_unset_accum_steps_splits_batches_that_overflow_the_cpu_budget(
    config, sharded, monkeypatch
):
    """`config.accum_steps` unset: the CPU's choice (models/backend_tuning.py) for a budget of
    one image's MLP activation splits each device's 2 images in two; the updates stay those of
    the whole batch."""
    assert config.accum_steps is None and config.batch == 16  # 2 images on each of 8 devices.
    mesh = sharding.make_mesh(MESH, jax.devices())
    whole = Trainer(config, mesh, synthetic.INFO)
    assert whole.accum_steps == 1  # The tiny model is far below the real budget.
    tokens = models.micro_batch.num_tokens(whole.abstract_state.params)
    one_image = tokens * config.model.transformer.mlp_dim * 4  # float32.
    budget = dataclasses.replace(backend_tuning.CPU, train_activation_bytes=one_image)
    monkeypatch.setattr(backend_tuning, "CPU", budget)
    assert Trainer(config, mesh, synthetic.INFO).accum_steps == 2
    losses, params, _ = run_steps(config, jax.devices(), MESH)
    np.testing.assert_allclose(losses, sharded[0], rtol=1e-5)
    assert_trees_close(params, sharded[1], rtol=1e-4, atol=1e-6)


def test_bfloat16_compute_with_remat_and_adamw(config):
    """bfloat16 activations, float32 parameters, Adam's first moment in optim_dtype."""
    config = config.copy_and_resolve_references()
    config.model.update(dtype="bfloat16", remat=True)
    config.update(optimizer="adamw", weight_decay=0.1, optim_dtype="bfloat16")
    losses, _, state = run_steps(config, jax.devices(), MESH)
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert all(leaf.dtype == np.float32 for leaf in jax.tree.leaves(state.params))
    mu = optax.tree_utils.tree_get(state.opt_state, "mu")
    assert all(leaf.dtype == jax.numpy.bfloat16 for leaf in jax.tree.leaves(mu))


def _vit_b16_shapes():
    """ViT-B/16's parameter shapes at 224 px, and its mlp_dim."""
    model = models.get_model("ViT-B_16", num_classes=1000)
    images = jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)
    params = jax.eval_shape(lambda x: model.init(jax.random.key(0), x)["params"], images)
    return params, model.transformer["mlp_dim"]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_trainer_default_for_vit_b16_counts_the_float32_mlp_activation(dtype):
    """Item 3: the MLP activation is float32 whatever the compute dtype, so ViT-B/16 at 224 px
    trains in micro-batches of 4 images in float32 and bfloat16 alike (8 micro-batches at
    batch 32)."""
    params, mlp_dim = _vit_b16_shapes()
    assert step.default_accum_steps("cpu", 32, params, mlp_dim, dtype, "xla") == 8
    assert step.default_accum_steps("tpu", 32, params, mlp_dim, dtype, "xla") == 1
    # oneDNN's matmuls take micro-batches of 16 images (its 40 MiB budget).
    assert step.default_accum_steps("cpu", 32, params, mlp_dim, dtype, "onednn") == 2
    assert step.default_accum_steps("cpu", 8, params, mlp_dim, dtype, "onednn") == 1


def test_default_accum_steps_follow_the_library_auto_picks(monkeypatch):
    """ "auto" (the default) takes the micro-batches of the library it resolves to here."""
    params, mlp_dim = _vit_b16_shapes()
    for library, want in (("xla", 8), ("onednn", 2)):
        monkeypatch.setattr(backend_tuning, "auto_matmul_library", lambda _, pick=library: pick)
        assert step.default_accum_steps("cpu", 32, params, mlp_dim, "bfloat16") == want


def test_trainer_takes_the_micro_batches_of_its_matmul_library(config, monkeypatch):
    """An unset `accum_steps` follows `model.matmul_library` (item 3): a budget that splits the
    tiny model's batch of 16 in 8 with XLA's matmuls splits it in 2 with oneDNN's."""
    # The trainer builds the model, and with it the custom call.
    custom_calls.require(jnp.float32, "onednn")
    # Tokens (8 px images in 4 px patches, and the class token) x mlp_dim x float32 bytes.
    per_image = 5 * config.model.transformer.mlp_dim * 4
    monkeypatch.setattr(
        backend_tuning,
        "CPU",
        dataclasses.replace(backend_tuning.CPU, train_activation_bytes=2 * per_image),
    )
    monkeypatch.setattr(backend_tuning, "CUSTOM_CALL_TRAIN_ACTIVATION_BYTES", 8 * per_image)
    config = config.copy_and_resolve_references()
    config.accum_steps = None
    mesh = sharding.make_mesh({"data": 1, "fsdp": 1}, jax.devices()[:1])
    assert Trainer(config, mesh, synthetic.INFO).accum_steps == 8
    config.model.matmul_library = "onednn"
    assert Trainer(config, mesh, synthetic.INFO).accum_steps == 2
