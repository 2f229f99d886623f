"""The one file-system layer of the checkpoint package: read and atomically write files.

Local paths use Python's own file API, so a local checkpoint loads without TensorFlow. Other
schemes (`gs://`, `s3://`, ...) go through `tf.io.gfile`, and `http(s)://` URLs through
urllib. Remote reads stream into a local temporary file with a tqdm progress bar: `np.load`
needs a seekable file, and a temporary file keeps a multi-GB checkpoint out of memory.

Before TensorFlow touches a remote path, `check_reachable` connects to the storage service
with a short timeout: offline, TensorFlow's own retries end minutes later in a long traceback.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any, BinaryIO

import tqdm

from vit_jax.checkpoint.errors import UnreachableError

CHUNK_BYTES = 1 << 20
HTTP_TIMEOUT_S = 60.0  # Per blocking socket operation, not for the whole download.
REACH_TIMEOUT_S = 5.0  # Resolving and connecting to a storage service, before any transfer.
# The service behind each scheme that tf.io.gfile reads; others (ram://, hdfs://) are not checked.
REMOTE_HOSTS = {"gs": "storage.googleapis.com", "s3": "s3.amazonaws.com"}
_reached: set[str] = set()  # Hosts already reached by this process.


def is_url(path: str | os.PathLike) -> bool:
    """Whether `path` is an http(s) URL (a PathLike is always a local path)."""
    return isinstance(path, str) and path.startswith(("http://", "https://"))


def is_local(path: str) -> bool:
    return "://" not in path


def check_reachable(path: str | os.PathLike, what: str = "path") -> None:
    """Raises UnreachableError within `REACH_TIMEOUT_S` if `path`'s storage cannot be reached.

    `what` says where the path came from (e.g. "config.tfds_data_dir") for the message.
    Local paths and http(s) URLs (urllib reports those itself) pass at once.
    """
    path = os.fspath(path)
    scheme = path.split("://", 1)[0] if "://" in path else ""
    host = REMOTE_HOSTS.get(scheme)
    if host is None or host in _reached:
        return
    address = _first_hop(host)
    outcome: list[BaseException | None] = []

    def connect() -> None:
        try:
            socket.create_connection(address, timeout=REACH_TIMEOUT_S).close()
            outcome.append(None)
        except OSError as e:
            outcome.append(e)

    thread = threading.Thread(target=connect, daemon=True)  # getaddrinfo has no timeout.
    thread.start()
    thread.join(REACH_TIMEOUT_S)
    error = outcome[0] if outcome else TimeoutError(f"no answer in {REACH_TIMEOUT_S:g} s")
    if error is None:
        _reached.add(host)
        return
    via = f" (through the proxy {address[0]}:{address[1]})" if address[0] != host else ""
    raise UnreachableError(
        f"Cannot reach {path} ({what}): {host}{via} is unreachable from here ({error}). Without "
        "network access, copy the files to a local directory and pass its path instead; "
        "otherwise check the network, proxy and credentials."
    )


def _first_hop(host: str) -> tuple[str, int]:
    """(host, port) a connection to `host` goes to first: an https proxy if one is set (and
    `host` is not in no_proxy), since a direct connection may be blocked where it works."""
    proxy = urllib.request.getproxies().get("https")
    if not proxy or urllib.request.proxy_bypass(host):
        return host, 443
    parsed = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    return parsed.hostname or host, parsed.port or (443 if parsed.scheme == "https" else 80)


def _gfile() -> Any:
    import tensorflow as tf  # Imported only for gs:// and other non-local schemes.

    return tf.io.gfile


def _copy(src: Any, dst: Any, total: int | None, desc: str) -> None:
    """Copies `src` to `dst` in chunks, with a progress bar in bytes."""
    with tqdm.tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc) as bar:
        while chunk := src.read(CHUNK_BYTES):
            dst.write(chunk)
            bar.update(len(chunk))


@contextlib.contextmanager
def open_stream(path: str, *, timeout_s: float = HTTP_TIMEOUT_S) -> Iterator[Any]:
    """A local file or an http(s) URL, open to be read front to back (`open_read` seeks).

    `timeout_s` bounds each blocking socket operation, not the whole download. Failures raise
    as `open` and `urllib.request.urlopen` raise them (FileNotFoundError, HTTPError, ...).
    """
    if is_url(path):
        with urllib.request.urlopen(path, timeout=timeout_s) as response:
            yield response
    else:
        with open(path, "rb") as f:
            yield f


def _download(path: str, dst: BinaryIO) -> None:
    desc = f"Reading {path.rsplit('/', 1)[-1]}"
    if is_url(path):
        try:
            with open_stream(path) as response:
                length = response.headers.get("Content-Length")
                _copy(response, dst, int(length) if length else None, desc)
        except urllib.error.HTTPError as e:
            if e.code in (403, 404):  # GCS answers 403 for missing objects in some buckets.
                raise FileNotFoundError(f"{path} (HTTP {e.code} {e.reason})") from e
            raise
        return
    check_reachable(path)
    gfile = _gfile()
    if not gfile.exists(path):
        raise FileNotFoundError(path)
    with gfile.GFile(path, "rb") as src:
        _copy(src, dst, gfile.stat(path).length, desc)


@contextlib.contextmanager
def open_read(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A seekable binary file with the contents of `path`; FileNotFoundError if absent."""
    path = os.fspath(path)
    if is_local(path):
        with open(path, "rb") as f:
            yield f
        return
    with tempfile.TemporaryFile() as local:
        _download(path, local)
        local.seek(0)
        yield local


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A writable binary file whose contents replace `path` only when the block succeeds.

    The data goes to a temporary name next to `path` and is renamed over it at the end, so a
    failure (or an interrupt) never leaves a partial file or destroys an existing one.
    """
    path = os.fspath(path)
    if is_url(path):
        raise ValueError(f"Cannot write to {path}: http(s) URLs are read-only.")
    if is_local(path):
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        tmp = os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
        try:
            # O_EXCL: never reuse a name; mode 0o666 lets the umask decide, as for open().
            with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb") as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return
    check_reachable(path)
    gfile = _gfile()
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    with tempfile.TemporaryFile() as local:
        yield local  # Spooled locally: some file systems cannot tell() while writing.
        size = local.tell()
        local.seek(0)
        try:
            gfile.makedirs(path.rsplit("/", 1)[0])
            with gfile.GFile(tmp, "wb") as dst:
                _copy(local, dst, size, f"Writing {path.rsplit('/', 1)[-1]}")
            gfile.rename(tmp, path, overwrite=True)
        except BaseException:
            with contextlib.suppress(Exception):
                if gfile.exists(tmp):
                    gfile.remove(tmp)
            raise
