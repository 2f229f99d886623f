"""The per-backend choices are the ones `backend_tuning`'s docstring states and measures."""

import jax
import pytest

from vit_jax import models
from vit_jax.models import backend_tuning


def test_cpu_runs_explicit_attention_and_800_token_micro_batches():
    choices = backend_tuning.for_platform("cpu")
    assert choices == backend_tuning.BackendChoices(attention="explicit", micro_batch_tokens=800)
    assert backend_tuning.TOKENS_PER_MICRO_BATCH == 800


@pytest.mark.parametrize("platform", ["tpu", "gpu"])
def test_accelerators_keep_jax_defaults(platform):
    choices = backend_tuning.for_platform(platform)
    assert choices == backend_tuning.BackendChoices(attention="xla", micro_batch_tokens=None)


def test_docstring_states_every_choice():
    doc = backend_tuning.__doc__
    assert "TOKENS_PER_MICRO_BATCH` = 800" in doc
    assert doc.count("TPU and GPU:") == 2  # One line per choice says what accelerators get.
    assert "benchmarks/RESULTS.md" in doc


def test_this_process_asks_its_default_backend(monkeypatch):
    assert backend_tuning.for_default_backend() == backend_tuning.CPU
    monkeypatch.setattr(jax, "default_backend", lambda: "tpu")
    assert backend_tuning.for_default_backend() == backend_tuning.ACCELERATOR
    assert models.micro_batch_size(197) is None
