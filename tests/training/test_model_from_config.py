"""The trainer's model for devices other than this process's (a program compiled ahead of time
for a TPU or GPU on a CPU host) takes a portable attention and the matmul outputs of those
devices (`backend_tuning.attention_compiled_for`, `matmul_outputs_compiled_for`), never the
host's choices."""

from __future__ import annotations

import jax
import pytest

from tests.training import tiny_config
from vit_jax.training.trainer import model_from_config


@pytest.mark.parametrize(
    "host, platform, attention, outputs",
    [
        ("cpu", None, "auto", "auto"),  # This process's own devices: "auto" decides when it runs.
        ("cpu", "cpu", "auto", "auto"),  # The host itself.
        ("cpu", "tpu", "xla", "float32"),
        ("cpu", "gpu", "xla", "compute"),  # Not "cudnn": the host cannot tell if that GPU runs it.
        ("gpu", "cpu", "explicit", "float32"),  # A GPU host compiling for CPUs: not its choices.
    ],
)
def test_auto_choices_for_other_devices_are_theirs(monkeypatch, host, platform, attention, outputs):
    monkeypatch.setattr(jax, "default_backend", lambda: host)
    config = tiny_config.get_config()
    model = model_from_config(config.model, num_classes=3, platform=platform)
    assert (model.attention_implementation, model.matmul_outputs) == (attention, outputs)


def test_explicit_matmul_outputs_are_kept_for_other_devices():
    config = tiny_config.get_config()
    config.model.matmul_outputs = "compute"
    assert model_from_config(config.model, num_classes=3, platform="tpu").matmul_outputs == (
        "compute"
    )
