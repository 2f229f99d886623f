"""Fine-tuning initialisation places each pre-trained array directly in its FSDP sharding."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from tests.training import tiny_config
from vit_jax import checkpoint, models, sharding
from vit_jax.plan import DatasetShape
from vit_jax.training.trainer import Trainer

NUM_CLASSES = 5


@pytest.mark.parametrize("scan_layers", [False, True])
def test_pretrained_params_land_in_their_shards(tmp_path, scan_layers):
    config = tiny_config.get_config()
    config.model.transformer.num_layers = 2
    config.model.scan_layers = scan_layers
    config.model.model_name = "tiny"
    config.mesh.update(data=1, fsdp=8)  # hidden 16, mlp 32: every kernel splits 8 ways.
    config.pretrained_dir = str(tmp_path)
    shape = DatasetShape(num_classes=NUM_CLASSES, image_size=tiny_config.IMAGE_SIZE)

    # A "published" checkpoint of the same model with another head (10 classes).
    source = Trainer(config.copy_and_resolve_references(), sharding.make_mesh(config.mesh),
                     DatasetShape(10, tiny_config.IMAGE_SIZE))  # fmt: skip
    rng = np.random.default_rng(0)
    published = jax.tree.map(
        lambda x: rng.standard_normal(x.shape).astype(np.float32),
        models.unstack_encoder_blocks(source.abstract_state.params),
    )
    checkpoint.save(published, tmp_path / "tiny.npz")

    trainer = Trainer(config, sharding.make_mesh(config.mesh), shape)
    state = trainer.initial_state()
    for leaf, expected in zip(
        jax.tree.leaves(state), jax.tree.leaves(trainer.state_shardings), strict=True
    ):
        assert leaf.sharding.is_equivalent_to(expected, leaf.ndim)
    kernel = state.params["embedding"]["kernel"]  # [4, 4, 3, 16], split over 'fsdp'.
    assert kernel.addressable_shards[0].data.size == kernel.size // 8
    params = models.unstack_encoder_blocks(trainer.host_params(state))
    np.testing.assert_array_equal(params["head"]["kernel"], 0.0)  # Fresh, 5 classes.
    assert params["head"]["kernel"].shape == (16, NUM_CLASSES)
    for key in ("embedding", "Transformer"):
        jax.tree.map(np.testing.assert_array_equal, params[key], published[key])
    assert int(state.step) == 0
