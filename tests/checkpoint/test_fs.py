"""Remote checkpoints: http(s) through a local server, and the tf.io.gfile path via ram://;
atomic saves on both write paths."""

import functools
import http.server
import threading
import uuid

import numpy as np
import pytest

from tests.checkpoint.tiny import assert_trees_identical
from vit_jax.checkpoint import CheckpointError, fs, load, save


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@pytest.fixture
def http_root(tmp_path):
    """Serves `tmp_path` on 127.0.0.1; yields (directory, base URL)."""
    handler = functools.partial(QuietHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_load_over_http(vit_params, http_root, capsys):
    directory, url = http_root
    save(vit_params, directory / "ViT-tiny.npz")
    assert_trees_identical(load(f"{url}/ViT-tiny.npz"), vit_params)
    assert "Reading ViT-tiny.npz" in capsys.readouterr().err  # The tqdm progress bar.


def test_missing_url_names_the_url(http_root):
    _, url = http_root
    with pytest.raises(CheckpointError) as info:
        load(f"{url}/imagenet21k/ViT-B_16.npz")
    message = str(info.value)
    assert f"{url}/imagenet21k/ViT-B_16.npz" in message and "HTTP 404" in message
    assert "https://storage.googleapis.com/vit_models/" in message


def test_text_over_http_is_not_a_checkpoint(http_root):
    directory, url = http_root
    (directory / "index.npz").write_text("<!DOCTYPE html><title>Sign in</title>")
    with pytest.raises(CheckpointError, match="text file"):
        load(f"{url}/index.npz")


def test_unreachable_server_is_a_checkpoint_error():
    with pytest.raises(CheckpointError, match="could not be read"):
        load("http://127.0.0.1:1/ViT-B_16.npz")  # Port 1: connection refused.


def test_urls_are_read_only(vit_params):
    with pytest.raises(ValueError, match="read-only"):
        save(vit_params, "https://storage.googleapis.com/vit_models/x.npz")


def test_gfile_save_and_load(vit_params):
    """gs:// and other schemes go through tf.io.gfile; TensorFlow's ram:// stands in for GCS."""
    path = f"ram://{uuid.uuid4().hex}/dir/model.npz"
    save(vit_params, path)
    assert_trees_identical(load(path), vit_params)
    save(vit_params, path)  # Overwriting keeps a single file and no temporaries.
    gfile = fs._gfile()
    assert gfile.listdir(path.rsplit("/", 1)[0]) == ["model.npz"]
    with pytest.raises(CheckpointError, match="does not exist"):
        load(path + ".missing")


@pytest.mark.parametrize("where", ["local", "gfile"])
def test_failed_save_keeps_existing_file(vit_params, tmp_path, monkeypatch, where):
    """Both branches of fs.atomic_write: a save that fails midway leaves the file it would
    have replaced intact and no temporary file beside it."""
    directory = str(tmp_path) if where == "local" else f"ram://{uuid.uuid4().hex}"
    path = f"{directory}/model.npz"
    save(vit_params, path)
    with fs.open_read(path) as f:
        before = f.read()

    def broken_savez(file, *args, **kwargs):
        file.write(b"PK\x03\x04 partial")
        raise RuntimeError("interrupted")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(RuntimeError, match="interrupted"):
        save(vit_params, path)
    with fs.open_read(path) as f:
        assert f.read() == before
    assert fs._gfile().listdir(directory) == ["model.npz"]
