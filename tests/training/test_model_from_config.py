"""The trainer's model for devices other than this process's (a program compiled ahead of time
for a TPU or GPU on a CPU host) takes that platform's attention, never the host's."""

from __future__ import annotations

import jax
import pytest

from tests.training import tiny_config
from vit_jax.training.trainer import model_from_config


@pytest.mark.parametrize(
    "platform, want",
    [
        (None, "auto"),  # This process's own devices: "auto" decides when the model runs.
        ("cpu", "auto"),  # The host itself.
        ("tpu", "xla"),
        ("gpu", "xla"),  # Not "cudnn": the host cannot tell whether that GPU runs it.
    ],
)
def test_auto_attention_becomes_the_target_platforms_choice(monkeypatch, platform, want):
    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")  # The host, also on a GPU box.
    config = tiny_config.get_config()
    model = model_from_config(config.model, num_classes=3, platform=platform)
    assert model.attention_implementation == want
