"""Your own images as a TFDS dataset: `<root>/{train,test}/<class>/*.jpg|png`.

Unlike `tfds.ImageFolder`, this is prepared into ArrayRecord files, so subsplits like
`train[:90%]` and random access (global shuffling, per-process index ranges) work as for any
catalogue dataset. Every file is
decoded once at preparation and unreadable files are listed by name. The cache lives in
`<tfds_data_dir>/vit_image_folder/<name>_<fingerprint>/`, where the fingerprint covers the
root path and every file's name, size and modification time: adding or editing images
prepares a fresh copy.
"""

from __future__ import annotations

import hashlib
import os
import re
from typing import ClassVar

import tensorflow_datasets as tfds
from etils import epath
from PIL import Image

from vit_jax.data.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
_MAX_LISTED = 20  # Unreadable files named in the error; the rest are counted.


def list_images(root: str) -> dict[str, dict[str, list[str]]]:
    """{split: {class: sorted file paths}} for every split folder with images in class folders."""
    splits: dict[str, dict[str, list[str]]] = {}
    for split in sorted(os.listdir(root)):
        split_dir = os.path.join(root, split)
        if not os.path.isdir(split_dir):
            continue
        classes = {}
        for cls in sorted(os.listdir(split_dir)):
            cls_dir = os.path.join(split_dir, cls)
            if os.path.isdir(cls_dir):
                files = [
                    f for f in sorted(os.listdir(cls_dir)) if f.lower().endswith(IMAGE_EXTENSIONS)
                ]
                classes[cls] = [os.path.join(cls_dir, f) for f in files]
        if any(classes.values()):  # TFDS cannot write a split without examples.
            splits[split] = classes
    if "train" not in splits:
        raise DataError(f"Image folder {root!r} needs a train/<class>/ subfolder with images.")
    unknown = {c for s in splits.values() for c in s} - set(splits["train"])
    if unknown:
        raise DataError(f"Classes {sorted(unknown)} in {root!r} are missing from train/.")
    return splits


def _fingerprint(root: str, splits: dict[str, dict[str, list[str]]]) -> str:
    h = hashlib.sha256(os.path.abspath(root).encode())
    for classes in splits.values():
        for files in classes.values():
            for path in files:
                st = os.stat(path)
                h.update(f"{path}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:12]


def _unreadable(paths: list[str]) -> list[str]:
    bad = []
    for path in paths:
        try:
            with Image.open(path) as im:
                im.load()  # Decodes everything; truncated files fail here, not at open().
        except Exception:  # PIL raises many types (OSError, SyntaxError, ValueError...).
            bad.append(path)
    return bad


class ImageFolder(tfds.core.GeneratorBasedBuilder):
    """A class-per-folder image tree prepared as a TFDS dataset."""

    name = "vit_image_folder"
    # TFDS derives this through `importlib_resources`, which Python >= 3.9 no longer ships.
    code_path = epath.Path(__file__)
    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {
        "1.1.0": "Prepared as ArrayRecord (random access).",
        "1.0.0": "Class-per-folder images, validated at preparation.",
    }

    def __init__(self, root: str, **kwargs):
        self._root = os.path.abspath(os.path.expanduser(root))
        if not os.path.isdir(self._root):
            raise DataError(f"Image folder {root!r} does not exist.")
        self._splits = list_images(self._root)
        slug = re.sub(r"[^a-z0-9]+", "_", os.path.basename(self._root).lower()).strip("_")
        config_name = f"{slug or 'images'}_{_fingerprint(self._root, self._splits)}"
        super().__init__(config=tfds.core.BuilderConfig(name=config_name), **kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=f"Images from {self._root}",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(None, None, 3)),
                    "label": tfds.features.ClassLabel(names=list(self._splits["train"])),
                    "file_name": tfds.features.Text(),
                }
            ),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        del dl_manager  # Nothing to download.
        paths = [
            p for classes in self._splits.values() for files in classes.values() for p in files
        ]
        bad = _unreadable(paths)
        if bad:
            listed = "\n  ".join(bad[:_MAX_LISTED])
            more = f"\n  ... and {len(bad) - _MAX_LISTED} more" if len(bad) > _MAX_LISTED else ""
            raise DataError(
                f"{len(bad)} unreadable image file(s) in {self._root}; fix or remove them:\n"
                f"  {listed}{more}"
            )
        return {split: self._generate_examples(classes) for split, classes in self._splits.items()}

    def _generate_examples(self, classes: dict[str, list[str]]):
        for cls, files in classes.items():
            for path in files:
                rel = os.path.relpath(path, self._root)
                # Passing the path stores the file's own bytes; nothing is re-encoded.
                yield rel, {"image": path, "label": cls, "file_name": rel}
