"""One small digits model trained once per session (with few-shot evaluation in the run), and
the same architecture at random initialisation, both saved as published-layout .npz files."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from configs import digits
from tests.training import tiny_config
from vit_jax import checkpoint, models
from vit_jax.training.loop import TrainResult, train_and_evaluate

IMAGE_SIZE = 16  # A 4x4 grid of 4x4 patches: 8 px digits leave too little to learn.
STEPS = 300


@dataclasses.dataclass(frozen=True)
class DigitsRun:
    workdir: str
    result: TrainResult


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory) -> DigitsRun:
    """configs/digits.py shrunk to one 32-wide layer and 300 steps (~85% test accuracy), on a
    4 x 2 data x FSDP mesh of the 8 fake devices."""
    config = tiny_config.shrink(digits.get_config(), image_size=IMAGE_SIZE)
    config.model.hidden_size = 32
    config.model.transformer.mlp_dim = 64
    config.update(batch=64, total_steps=STEPS, warmup_steps=20, progress_every=STEPS)
    config.update(save_npz="digits.npz")
    config.mesh.fsdp = 2  # Features come from FSDP-sharded parameters, as in a big run.
    config.fewshot.datasets = ("digits",)
    config.fewshot.every = STEPS // 2
    workdir = str(tmp_path_factory.mktemp("fewshot_digits"))
    return DigitsRun(workdir, train_and_evaluate(config, workdir))


@pytest.fixture(scope="session")
def random_npz(digits_run, tmp_path_factory) -> str:
    """The trained model's architecture with freshly initialised parameters."""
    trained = checkpoint.load(digits_run.result.npz_path)
    model = models.build_model(checkpoint.infer_config(trained), num_classes=10)
    images = np.zeros((1, IMAGE_SIZE, IMAGE_SIZE, 3), np.float32)
    params = jax.device_get(model.init(jax.random.key(1), images)["params"])
    path = str(tmp_path_factory.mktemp("fewshot_random") / "random.npz")
    checkpoint.save(params, path)
    return path
