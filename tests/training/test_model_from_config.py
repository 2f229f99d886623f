"""The trainer's model for devices other than this process's (a program compiled ahead of time
for a TPU or GPU on a CPU host) takes a portable attention and the matmul outputs of those
devices (`backend_tuning.attention_compiled_for`, `matmul_outputs_compiled_for`) and XLA's
matmuls, never the host's choices."""

from __future__ import annotations

import jax
import pytest

from tests.training import tiny_config
from vit_jax.training.trainer import model_from_config


@pytest.mark.parametrize(
    "host, platform, attention, outputs, library",
    [
        # This process's own devices: "auto" decides when it runs.
        ("cpu", None, "auto", "auto", "auto"),
        ("cpu", "cpu", "auto", "auto", "auto"),  # The host itself.
        ("cpu", "tpu", "xla", "float32", "xla"),  # Never oneDNN's custom call of this host.
        ("cpu", "gpu", "xla", "compute", "xla"),  # Not "cudnn": the host cannot tell if it runs.
        ("gpu", "cpu", "explicit", "float32", "xla"),  # A GPU host compiling for CPUs.
    ],
)
def test_auto_choices_for_other_devices_are_theirs(
    monkeypatch, host, platform, attention, outputs, library
):
    monkeypatch.setattr(jax, "default_backend", lambda: host)
    config = tiny_config.get_config()
    config.model.dtype = "bfloat16"
    model = model_from_config(config.model, num_classes=3, platform=platform)
    assert (model.attention_implementation, model.matmul_outputs) == (attention, outputs)
    assert model.matmul_library == library


def test_explicit_matmul_outputs_are_kept_for_other_devices():
    config = tiny_config.get_config()
    config.model.matmul_outputs = "compute"
    assert model_from_config(config.model, num_classes=3, platform="tpu").matmul_outputs == (
        "compute"
    )
