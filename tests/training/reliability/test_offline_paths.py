"""gs:// paths where storage cannot be reached: one clear error, before any work, for the
workdir, config.pretrained_dir, config.tfds_data_dir and `vit_jax.infer --checkpoint`.

The storage host is pointed at an unresolvable name (`.invalid` never resolves), so the test
behaves the same with or without network access."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from tests.training.reliability import faults
from vit_jax import infer
from vit_jax.checkpoint import UnreachableError, fs, load


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setitem(fs.REMOTE_HOSTS, "gs", "storage.invalid")
    monkeypatch.setattr(fs, "_reached", set())
    for proxy in ("https_proxy", "HTTPS_PROXY"):  # A proxy would be what gets checked.
        monkeypatch.delenv(proxy, raising=False)


@pytest.mark.parametrize(
    "flag, what",
    [
        ("--workdir=gs://bucket/run", "--workdir"),
        ("--config.pretrained_dir=gs://vit_models/imagenet21k", "config.pretrained_dir"),
        ("--config.tfds_data_dir=gs://bucket/tensorflow_datasets", "config.tfds_data_dir"),
    ],
)
def test_trainer_paths(flag, what, tmp_path, monkeypatch, capsys):
    args = [flag] if flag.startswith("--config") else []
    workdir = flag.split("=", 1)[1] if not args else str(tmp_path / "run")
    code, out, err = faults.run_cli(monkeypatch, capsys, workdir, *args)
    assert code == 2
    assert "Cannot reach gs://" in err and f"({what}): storage.invalid is unreachable" in err
    assert "copy the files to a local directory" in err
    assert "Traceback" not in out + err and not out
    assert not os.path.exists(os.path.join(tmp_path, "run", "checkpoints"))


def test_infer_checkpoint(tmp_path, capsys):
    image = tmp_path / "rgb.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    code = infer.main(["--checkpoint", "gs://vit_models/imagenet21k/ViT-B_16.npz", "--image",
                       str(image)])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 2
    assert "Cannot reach gs://vit_models/imagenet21k/ViT-B_16.npz" in err
    assert "Traceback" not in out + err


def test_load_and_other_schemes():
    with pytest.raises(UnreachableError, match=r"storage\.invalid"):
        load("gs://vit_models/imagenet21k/ViT-B_16.npz")
    fs.check_reachable("ram://anything", "test")  # No service behind it to check.
    fs.check_reachable("/local/path", "test")


def test_through_an_unreachable_proxy(monkeypatch):
    monkeypatch.setitem(fs.REMOTE_HOSTS, "gs", "storage.googleapis.com")
    monkeypatch.setenv("https_proxy", "http://proxy.invalid:3128")
    monkeypatch.delenv("no_proxy", raising=False)
    with pytest.raises(UnreachableError, match=r"through the proxy proxy\.invalid:3128"):
        fs.check_reachable("gs://bucket/x", "test")
