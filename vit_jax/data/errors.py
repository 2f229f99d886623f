"""Errors raised by the input pipeline, with messages that say what to do next."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from vit_jax.errors import VitJaxError


class DataError(VitJaxError, ValueError):
    """A dataset or preprocessing setting that cannot work; the message says how to fix it."""


class DatasetNotPreparedError(DataError):
    """A TFDS dataset is not present in `tfds_data_dir`.

    Raised before anything is downloaded: TFDS's own download retries for minutes and can
    hang when the network does not answer, so we never start one for a third-party dataset.
    """


class UnknownNameError(DataError):
    """A dataset or op name that does not exist; the message lists close matches."""


def close_matches(name: str, candidates: Iterable[str], n: int = 5) -> list[str]:
    """Up to `n` candidates that look like `name` (typos, missing underscores)."""
    candidates = sorted(set(candidates))
    # A lower cutoff than difflib's default catches e.g. "imagenet" -> "imagenet2012".
    return difflib.get_close_matches(name, candidates, n=n, cutoff=0.5)


def unknown_name_error(kind: str, name: str, candidates: Iterable[str]) -> UnknownNameError:
    """`Unknown dataset 'cifar1O'. Did you mean: cifar10, cifar100?` (never the whole catalogue)."""
    matches = close_matches(name, candidates)
    hint = f" Did you mean: {', '.join(matches)}?" if matches else ""
    return UnknownNameError(f"Unknown {kind} {name!r}.{hint}")
