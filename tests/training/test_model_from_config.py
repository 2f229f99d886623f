"""The trainer's model for devices other than this process's (a program compiled ahead of time
for a TPU or GPU on a CPU host) takes a portable attention
(`backend_tuning.attention_compiled_for`), never the host's choice."""

from __future__ import annotations

import jax
import pytest

from tests.training import tiny_config
from vit_jax.training.trainer import model_from_config


@pytest.mark.parametrize(
    "host, platform, want",
    [
        ("cpu", None, "auto"),  # This process's own devices: "auto" decides when it runs.
        ("cpu", "cpu", "auto"),  # The host itself.
        ("cpu", "tpu", "xla"),
        ("cpu", "gpu", "xla"),  # Not "cudnn": the host cannot tell whether that GPU runs it.
        ("gpu", "cpu", "explicit"),  # A GPU host compiling for CPUs: not its cuDNN.
    ],
)
def test_auto_attention_for_other_devices_is_portable(monkeypatch, host, platform, want):
    monkeypatch.setattr(jax, "default_backend", lambda: host)
    config = tiny_config.get_config()
    model = model_from_config(config.model, num_classes=3, platform=platform)
    assert model.attention_implementation == want
