"""`python -m vit_jax.convert`: outputs, and user errors as one message with exit status 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from vit_jax.convert.cli import main
from vit_jax.errors import USER_ERROR_EXIT as USAGE_ERROR


def test_converts_and_prints_written_files(tiny_checkpoints, tmp_path, capsys):
    tiny = tiny_checkpoints("gap")
    assert main([tiny.npz, str(tmp_path / "timm"), "--to", "timm", "--quiet"]) == 0
    out = capsys.readouterr().out.split()
    assert out == [
        str(tmp_path / "timm" / "model.safetensors"),
        str(tmp_path / "timm" / "config.json"),
    ]


@pytest.mark.parametrize(
    ("make_src", "to", "message"),
    [
        (lambda d: str(d / "missing.npz"), "hf", "does not exist"),
        (lambda d: _write(d / "notes.txt", "hello"), "hf", "not a checkpoint this tool reads"),
        (lambda d: _write(d / "bad.npz", "<html>"), "timm", "not a checkpoint"),
        (lambda d: _write(d / "bad.safetensors", "junk"), "npz", "not a readable safetensors"),
        (lambda d: str(d), "npz", "directory without config.json"),
    ],
)
def test_bad_sources_exit_2_without_traceback(tmp_path, capsys, make_src, to, message):
    dst = tmp_path / "out.npz" if to == "npz" else tmp_path / "out"
    assert main([make_src(tmp_path), str(dst), "--to", to]) == USAGE_ERROR
    err = capsys.readouterr().err
    assert err.startswith("Error: ") and message in " ".join(err.split())
    assert "Traceback" not in err


def test_refusal_names_the_target_that_can_hold_it(tiny_checkpoints, tmp_path, capsys):
    assert main([tiny_checkpoints("gap").npz, str(tmp_path / "hf"), "--to", "hf"]) == USAGE_ERROR
    assert "--to timm or --to npz" in " ".join(capsys.readouterr().err.split())


def test_npz_target_needs_npz_suffix(tiny_checkpoints, tmp_path, capsys):
    assert main([tiny_checkpoints("token").npz, str(tmp_path / "x"), "--to", "npz"]) == 2
    assert "does not end in .npz" in capsys.readouterr().err


def test_unsupported_target_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["a.npz", "b", "--to", "onnx"])
    assert exit_info.value.code == USAGE_ERROR
    assert "invalid choice: 'onnx'" in capsys.readouterr().err


def test_module_entry_point(tmp_path):
    """The real command line: exit status 2 and a message, no traceback."""
    result = subprocess.run(
        [sys.executable, "-m", "vit_jax.convert", str(tmp_path / "nope.npz"), "out", "--to", "hf"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == USAGE_ERROR
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr


def _write(path, text):
    path.write_text(text)
    return str(path)
