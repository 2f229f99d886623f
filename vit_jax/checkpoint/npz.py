"""Load and save parameter trees as `.npz` files in the published layout.

`load` accepts the published and the linen layout (see `layout`) from a local path, `gs://`
or `http(s)://`, and returns the model's nested tree of numpy arrays. `save` writes the
published layout atomically. Files are never unpickled.
"""

from __future__ import annotations

import os
import urllib.error
import zipfile
import zlib
from collections.abc import Mapping
from typing import Any, BinaryIO

import numpy as np

from vit_jax.checkpoint import fs, layout
from vit_jax.checkpoint.errors import PUBLISHED_LOCATIONS, CheckpointError
from vit_jax.models import unstack_encoder_blocks

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # A zip entry, or an empty zip archive.
_REQUIRED_KEY = "embedding/kernel"
_ENCODER_PREFIX = "Transformer/encoderblock_"
_HINT = f"Published ViT checkpoints live at {PUBLISHED_LOCATIONS}."


def load(path: str | os.PathLike) -> dict[str, Any]:
    """The parameter tree stored in `path` (local, `gs://...` or `https://...`).

    Returns nested dicts of numpy arrays in the model's layout. Raises `CheckpointError` for a
    missing, unreadable or non-ViT file.
    """
    path = os.fspath(path)
    stored = _read_arrays(path)
    keys = sorted(stored)
    if _REQUIRED_KEY not in stored or not any(k.startswith(_ENCODER_PREFIX) for k in keys):
        raise CheckpointError(
            f"{path} is not a ViT checkpoint: it has no {_REQUIRED_KEY!r} or no "
            f"'{_ENCODER_PREFIX}*' arrays (it holds {len(keys)} arrays: {_first(keys)}). "
            f"Pass a ViT .npz file. {_HINT}"
        )
    try:
        return layout.to_model(stored)
    except ValueError as e:
        raise CheckpointError(f"{path} has an inconsistent layout: {e} Re-export it.") from e


def save(params: Mapping[str, Any], path: str | os.PathLike) -> None:
    """Writes `params` (the model's tree) to `path` as a published-layout `.npz`.

    Keys are '/'-joined, hybrid GroupNorm parameters `[1, 1, 1, C]`, no pickling. The file is
    written under a temporary name and renamed, so an existing file survives any failure.
    A `scan_layers` tree (stacked encoder blocks) is written per layer, like every file.
    Arrays must be fully addressable (gather sharded arrays first); bfloat16 and other types
    that `.npy` cannot describe are stored as float32 (lossless).
    """
    published = layout.to_published(unstack_encoder_blocks(params))
    arrays = {key: _storable(key, value) for key, value in published.items()}
    with fs.atomic_write(path) as f:
        np.savez(f, allow_pickle=False, **arrays)


def _storable(key: str, value: np.ndarray) -> np.ndarray:
    if value.dtype.kind == "V":  # ml_dtypes (bfloat16, float8_*) are opaque to .npy files.
        return value.astype(np.float32)
    if value.dtype.hasobject:
        raise TypeError(f"Cannot save {key!r}: dtype {value.dtype} would need pickling.")
    return value


def _first(keys: list[str], limit: int = 5) -> str:
    shown = ", ".join(keys[:limit])
    return f"{shown}, ..." if len(keys) > limit else shown or "none"


def _describe(head: bytes) -> str:
    """What a file that is not a zip archive looks like, from its first bytes."""
    if head.startswith(b"\x93NUMPY"):
        return "a single .npy array, not an .npz archive of named arrays"
    if head.startswith(b"\x80"):
        return "a pickle (never unpickled, for safety)"
    if head.startswith(b"version https://git-lfs"):
        return "a Git LFS pointer, not the file itself (run `git lfs pull`)"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "not an .npz archive"
    return "a text file (an HTML error page?), not an .npz archive"


def _read_arrays(path: str) -> dict[str, np.ndarray]:
    """All arrays of the `.npz` at `path`, by stored name, each checked to be numeric."""
    try:
        with fs.open_read(path) as f:
            stored = _parse(path, f)
    except FileNotFoundError as e:
        raise CheckpointError(
            f"Checkpoint {path} does not exist ({e}). Check the path or the URL. {_HINT}"
        ) from e
    except IsADirectoryError as e:
        raise CheckpointError(
            f"{path} is a directory, not an .npz file (an Orbax train state? Those are "
            "restored by the trainer). Pass the path of a .npz file."
        ) from e
    except (urllib.error.URLError, PermissionError) as e:
        raise CheckpointError(
            f"{path} could not be read ({e}). Check permissions, the URL and network access."
        ) from e
    bad = sorted(k for k, v in stored.items() if not isinstance(v, np.ndarray) or v.dtype.hasobject)
    if bad:
        raise CheckpointError(
            f"{path} is not a checkpoint: its members {_first(bad)} are not numeric .npy "
            f"arrays. Pass a ViT .npz file. {_HINT}"
        )
    return stored


def _parse(path: str, f: BinaryIO) -> dict[str, Any]:
    head = f.read(32)
    if len(head) < 4:
        raise CheckpointError(f"{path} is empty or truncated. Download or save it again.")
    if head[:4] not in _ZIP_MAGIC:
        raise CheckpointError(
            f"{path} is not a checkpoint: it is {_describe(head)}. Pass a .npz file saved by "
            f"vit_jax.checkpoint.save or a published one. {_HINT}"
        )
    f.seek(0)
    try:
        with np.load(f, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except ValueError as e:
        if "allow_pickle" not in str(e):
            raise CheckpointError(f"{path} is corrupt ({e}). Download or save it again.") from e
        raise CheckpointError(
            f"{path} holds pickled object arrays, which are never loaded (unpickling can run "
            "arbitrary code). Re-save the parameters as plain numeric arrays with "
            "vit_jax.checkpoint.save."
        ) from e
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:
        raise CheckpointError(
            f"{path} is truncated or corrupt ({type(e).__name__}: {e}). Download or save it "
            "again; an interrupted copy is the usual cause."
        ) from e
