"""Class names for a classification head: ImageNet files shipped with TFDS, a user file, or indices.

    resolve_labels('auto', 1000)         # ImageNet-1k names from tensorflow_datasets
    resolve_labels('my_labels.txt', 10)  # one name per line, exactly 10 lines
    resolve_labels(None, 10)             # plain indices '0'..'9'

TFDS ships ImageNet-1k's class names as WordNet IDs (`n01440764` is "tench"), in the order of
the TFDS `imagenet2012` labels the published checkpoints were trained with. It ships no
ImageNet-21k names; for those (or human-readable ImageNet-1k lemmas) pass a label file, e.g.
the published `imagenet21k_wordnet_lemmas.txt` / `ilsvrc2012_wordnet_lemmas.txt`.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import pathlib
from collections.abc import Sequence

from vit_jax.checkpoint.fs import is_url
from vit_jax.inference.errors import LabelError
from vit_jax.inference.sources import read_bytes

MAX_LABEL_BYTES = 32 * 2**20


@dataclasses.dataclass(frozen=True)
class BuiltinLabels:
    num_classes: int
    # Paths inside the installed tensorflow_datasets package, newest layout first.
    candidates: tuple[str, ...]


BUILTIN: dict[str, BuiltinLabels] = {
    "imagenet2012": BuiltinLabels(
        1000,
        ("datasets/imagenet2012/labels.txt", "image_classification/imagenet2012_labels.txt"),
    ),
    "imagenet21k": BuiltinLabels(
        21843,
        ("datasets/imagenet21k/labels.txt", "image_classification/imagenet21k_labels.txt"),
    ),
}
AUTO = "auto"  # The builtin set whose class count matches the head, else indices.
INDICES = "indices"


@dataclasses.dataclass(frozen=True)
class Labels:
    """Names of a head's classes (None: plain indices), where they came from, and any caveat."""

    names: tuple[str, ...] | None
    source: str
    note: str | None = None

    def name(self, index: int) -> str:
        return self.names[index] if self.names is not None else str(index)


def tfds_file(relative: str) -> pathlib.Path | None:
    """A data file inside the installed tensorflow_datasets, located without importing it."""
    spec = importlib.util.find_spec("tensorflow_datasets")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        path = pathlib.Path(root) / relative
        if path.is_file():
            return path
    return None


def resolve_labels(spec: str | os.PathLike | Sequence[str] | None, num_classes: int) -> Labels:
    """The names for a head of `num_classes` classes.

    `spec`: `'auto'` (ImageNet-1k/21k when the class count matches), `'imagenet2012'`,
    `'imagenet21k'`, a file path or http(s) URL with one name per line, a sequence of names,
    or None / `'indices'` for plain indices. Raises `LabelError` when the names are unreadable
    or their number differs from `num_classes`; a builtin set TFDS does not ship falls back to
    indices with a `note`.
    """
    if spec is None or spec == INDICES:
        return Labels(None, "indices")
    if isinstance(spec, str | os.PathLike):
        name = os.fspath(spec)
        if name == AUTO:
            for key, builtin in BUILTIN.items():
                if builtin.num_classes == num_classes:
                    return _builtin(key, num_classes)
            return Labels(None, "indices")
        if name in BUILTIN and not os.path.exists(name):
            return _builtin(name, num_classes)
        return _from_file(name, num_classes)
    names = tuple(str(n) for n in spec)
    _check_count(len(names), num_classes, "The given label list")
    return Labels(names, "list")


def _check_count(count: int, num_classes: int, what: str) -> None:
    if count != num_classes:
        raise LabelError(
            f"{what} has {count} names but the checkpoint's head has {num_classes} classes. "
            "Pass a label file with exactly one name per class, one per line, or "
            "--labels indices."
        )


def _builtin(key: str, num_classes: int) -> Labels:
    builtin = BUILTIN[key]
    if builtin.num_classes != num_classes:
        raise LabelError(
            f"--labels {key} has {builtin.num_classes} names but the checkpoint's head has "
            f"{num_classes} classes. Pass a matching label file, or --labels indices."
        )
    for relative in builtin.candidates:
        path = tfds_file(relative)
        if path is not None:
            names = _parse(path.read_bytes(), str(path))
            _check_count(len(names), num_classes, f"The label file {path}")
            return Labels(names, f"tensorflow_datasets/{relative}")
    return Labels(
        None,
        "indices",
        note=(
            f"The installed tensorflow_datasets does not ship {key} label names (looked for "
            f"{', '.join(builtin.candidates)}); showing class indices. Pass --labels FILE "
            "with one name per line for names."
        ),
    )


def _from_file(name: str, num_classes: int) -> Labels:
    if not is_url(name) and not os.path.exists(name):
        choices = ", ".join([AUTO, INDICES, *BUILTIN])
        raise LabelError(
            f"Label file {name} does not exist. Pass one of {choices}, or a text file with "
            "one class name per line."
        )
    names = _parse(read_bytes(name, MAX_LABEL_BYTES, "Label file", LabelError), name)
    _check_count(len(names), num_classes, f"The label file {name}")
    return Labels(names, name)


def _parse(data: bytes, name: str) -> tuple[str, ...]:
    """One name per line; trailing blank lines (a final newline) do not count."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise LabelError(
            f"Label file {name} is not UTF-8 text ({e}). It must hold one class name per line."
        ) from None
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return tuple(lines)
