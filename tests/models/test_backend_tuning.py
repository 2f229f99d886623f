"""The per-backend choices are the ones `backend_tuning`'s docstring states and measures."""

import jax
import pytest

from vit_jax import models
from vit_jax.models import backend_tuning


def test_cpu_runs_explicit_attention_and_cache_sized_micro_batches():
    choices = backend_tuning.for_platform("cpu")
    assert choices == backend_tuning.BackendChoices(
        attention="explicit", micro_batch_tokens=800, train_activation_bytes=10 * 2**20
    )
    assert backend_tuning.TOKENS_PER_MICRO_BATCH == 800
    assert backend_tuning.TRAIN_ACTIVATION_BYTES == 10 * 2**20


# (images per device, tokens per image, mlp_dim, bytes per value) -> micro-batches on CPU.
B16_224 = (197, 3072)  # ViT-B/16 at 224 px.
TRAINING_SPLITS = [
    ((32, *B16_224, 4), 8),  # float32: micro-batches of 4 images (9.7 MB each).
    ((8, *B16_224, 4), 2),
    ((4, *B16_224, 4), 1),
    ((32, *B16_224, 2), 4),  # 2-byte values: 8 fit (the trainer passes at least 4).
    ((24, *B16_224, 4), 6),  # The fewest divisors that fit: 6 x 4.
    ((10, *B16_224, 4), 5),  # 5 does not fit (12.1 MB): 5 x 2.
    ((11, *B16_224, 4), 11),  # 11 is prime: one image at a time.
    ((2, 577, 16384, 4), 2),  # One image over the budget alone: still one at a time.
    ((128, 17, 128, 4), 1),  # configs/digits.py: never split.
]


@pytest.mark.parametrize("shape, steps", TRAINING_SPLITS)
def test_cpu_training_splits_batches_whose_activations_overflow_the_budget(shape, steps):
    images, tokens, mlp_dim, itemsize = shape
    choice = backend_tuning.CPU.train_accum_steps(images, tokens, mlp_dim, itemsize)
    assert choice == steps
    assert images % choice == 0


@pytest.mark.parametrize("platform", ["tpu", "gpu"])
def test_accelerators_train_whole_batches(platform):
    choices = backend_tuning.for_platform(platform)
    assert choices.train_accum_steps(32, *B16_224, 4) == 1


@pytest.mark.parametrize("platform", ["tpu", "gpu"])
def test_accelerators_keep_jax_defaults(platform):
    choices = backend_tuning.for_platform(platform)
    assert choices == backend_tuning.BackendChoices(
        attention="xla", micro_batch_tokens=None, train_activation_bytes=None
    )


def test_docstring_states_every_choice():
    doc = backend_tuning.__doc__
    assert "TOKENS_PER_MICRO_BATCH` = 800" in doc
    assert "`TRAIN_ACTIVATION_BYTES` = 10 MiB" in doc
    assert doc.count("TPU and GPU:") == 3  # One line per choice says what accelerators get.
    assert "benchmarks/RESULTS.md" in doc


def test_this_process_asks_its_default_backend(monkeypatch):
    assert backend_tuning.for_default_backend() == backend_tuning.CPU
    monkeypatch.setattr(jax, "default_backend", lambda: "tpu")
    assert backend_tuning.for_default_backend() == backend_tuning.ACCELERATOR
    assert models.micro_batch_size(197) is None
