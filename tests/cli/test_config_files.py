"""`--config` values: an existing path wins; otherwise a shipped config by name or by its
checkout path, with any `:arg` kept."""

from __future__ import annotations

import os

from vit_jax.cli import config_files

SHIPPED = config_files.shipped_dir()


def test_shipped_configs_are_found_by_name_or_checkout_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # No configs/ here.
    digits = os.path.join(SHIPPED, "digits.py")
    for value in ("digits", "digits.py", "configs/digits.py"):
        assert config_files.resolve(value) == digits, value
    finetune = os.path.join(SHIPPED, "finetune.py")
    assert config_files.resolve("configs/finetune.py:b16,cifar10") == finetune + ":b16,cifar10"


def test_existing_paths_and_unknown_names_are_left_alone(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "digits.py").write_text("")
    assert config_files.resolve("configs/digits.py:x") == "configs/digits.py:x"
    assert config_files.resolve("no_such_config") == "no_such_config"


def test_both_flag_spellings_are_resolved(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["train", "--config", "digits", "--config=digits", "--workdir", "digits"]
    digits = os.path.join(SHIPPED, "digits.py")
    assert config_files.resolve_argv(argv) == [
        "train", "--config", digits, f"--config={digits}", "--workdir", "digits"
    ]  # fmt: skip
