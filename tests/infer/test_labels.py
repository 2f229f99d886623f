"""resolve_labels: TFDS's ImageNet names, user files, indices, and size mismatches."""

from __future__ import annotations

import dataclasses

import pytest

from vit_jax.inference import LabelError, resolve_labels
from vit_jax.inference.labels import BUILTIN, tfds_file


def test_imagenet2012_from_tfds():
    if tfds_file(BUILTIN["imagenet2012"].candidates[0]) is None:
        pytest.skip("this tensorflow_datasets ships no imagenet2012 labels.txt")
    for spec in ("auto", "imagenet2012"):
        labels = resolve_labels(spec, 1000)
        assert len(labels.names) == 1000 and labels.note is None
        assert labels.name(0) == "n01440764"  # TFDS order: sorted WordNet IDs, tench first.


def test_unshipped_builtin_falls_back_to_indices(monkeypatch):
    missing = dataclasses.replace(BUILTIN["imagenet21k"], candidates=("no/such/labels.txt",))
    monkeypatch.setitem(BUILTIN, "imagenet21k", missing)
    labels = resolve_labels("imagenet21k", 21843)
    assert labels.names is None and labels.name(7) == "7"
    assert "does not ship imagenet21k" in labels.note and "--labels FILE" in labels.note


def test_auto_without_a_builtin_size_gives_indices():
    labels = resolve_labels("auto", 10)
    assert labels.names is None and labels.note is None and labels.name(3) == "3"
    assert resolve_labels(None, 10).names is None


def test_builtin_of_the_wrong_size():
    with pytest.raises(LabelError, match=r"imagenet2012 has 1000 names .* head has 10 classes"):
        resolve_labels("imagenet2012", 10)


def test_label_file(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("cat\ndog\n  bird  \n\n")  # Trailing blank lines do not count.
    labels = resolve_labels(str(path), 3)
    assert labels.names == ("cat", "dog", "bird") and labels.source == str(path)


def test_label_file_size_mismatch_names_file_and_counts(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("cat\ndog\n")
    with pytest.raises(LabelError) as info:
        resolve_labels(path, 5)
    message = str(info.value)
    assert str(path) in message and "2 names" in message and "5 classes" in message


def test_unreadable_label_files(tmp_path):
    with pytest.raises(LabelError, match=r"absent\.txt does not exist"):
        resolve_labels(str(tmp_path / "absent.txt"), 2)
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(LabelError, match=r"binary\.txt is not UTF-8"):
        resolve_labels(binary, 2)


def test_label_url(http_root):
    base, served = http_root
    (served / "names.txt").write_text("a\nb\n")
    assert resolve_labels(f"{base}/names.txt", 2).names == ("a", "b")


def test_label_list():
    assert resolve_labels(["x", "y"], 2).name(1) == "y"
    with pytest.raises(LabelError, match="3 names"):
        resolve_labels(["x", "y", "z"], 2)
