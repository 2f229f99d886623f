"""Reading a user's local file or http(s) URL into bytes, with a size cap and clear errors."""

from __future__ import annotations

import os
import urllib.error

from vit_jax.checkpoint import fs
from vit_jax.inference.errors import InferenceError

# Per blocking socket operation. Images and label files are small, so a stalled server is
# given up on sooner than during a checkpoint download (fs.HTTP_TIMEOUT_S).
HTTP_TIMEOUT_S = 30.0


def read_bytes(
    source: str | os.PathLike,
    max_bytes: int | None,
    what: str,
    error: type[InferenceError] = InferenceError,
) -> bytes:
    """The contents of a local file or http(s) URL; `error` (naming `what`) when unreadable.

    Refuses sources larger than `max_bytes` (None: no limit) without reading them whole.
    """
    name = os.fspath(source)
    try:
        with fs.open_stream(name, timeout_s=HTTP_TIMEOUT_S) as f:
            return _read_capped(f, name, max_bytes, what, error)
    except FileNotFoundError:
        raise error(f"{what} {name} does not exist. Check the path.") from None
    except IsADirectoryError:
        raise error(f"{what} {name} is a directory, not a file.") from None
    except PermissionError:
        raise error(f"{what} {name} cannot be read: permission denied.") from None
    except urllib.error.HTTPError as e:
        raise error(f"{what} {name} could not be downloaded: HTTP {e.code} {e.reason}.") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
        reason = getattr(e, "reason", e)
        raise error(
            f"{what} {name} could not be downloaded ({reason}). Check the URL and network "
            "access, or download the file and pass its local path."
        ) from None


def _read_capped(
    f, name: str, max_bytes: int | None, what: str, error: type[InferenceError]
) -> bytes:
    chunks, total = [], 0
    while chunk := f.read(fs.CHUNK_BYTES):
        total += len(chunk)
        if max_bytes is not None and total > max_bytes:
            raise error(
                f"{what} {name} is larger than {max_bytes / 2**20:.0f} MiB; refusing to read it. "
                "Pass a smaller file."
            )
        chunks.append(chunk)
    return b"".join(chunks)
