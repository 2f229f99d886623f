"""TFDS builder for scikit-learn's bundled handwritten digits: the offline default dataset.

1,797 grayscale 8x8 images of the digits 0-9 ship inside scikit-learn, so this dataset is
prepared on first use without any network. Pixel values 0..16 are scaled to 0..255. The
train/test split (1,437 / 360) is stratified by class and fixed by a frozen random stream,
so it is identical on every machine and every run.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

NUM_TEST = 360
_SPLIT_SEED = 0


def stratified_test_indices(labels: np.ndarray, num_test: int, seed: int) -> np.ndarray:
    """Sorted indices of a test set with each class's share of `num_test` (largest remainder)."""
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * num_test / len(labels)
    take = np.floor(exact).astype(int)
    leftover = num_test - take.sum()
    take[np.argsort(-(exact - take), kind="stable")[:leftover]] += 1
    # RandomState's stream is frozen by NumPy, unlike Generator's, so the split never drifts.
    rng = np.random.RandomState(seed)
    picked = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take)]
    return np.sort(np.concatenate(picked))


class Digits(tfds.core.GeneratorBasedBuilder):
    """scikit-learn's `load_digits()` as a TFDS dataset with fixed train/test splits."""

    # TFDS derives this through `importlib_resources`, which Python >= 3.9 no longer ships.
    code_path = epath.Path(__file__)
    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {
        "1.1.0": "Prepared as ArrayRecord (random access).",
        "1.0.0": "sklearn.datasets.load_digits, stratified 1437/360 split.",
    }

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description="Handwritten digits bundled with scikit-learn (UCI optdigits test set).",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(8, 8, 1)),
                    "label": tfds.features.ClassLabel(names=[str(d) for d in range(10)]),
                }
            ),
            supervised_keys=("image", "label"),
            homepage="https://scikit-learn.org/stable/datasets/toy_dataset.html",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        del dl_manager  # Everything is on disk already.
        from sklearn.datasets import load_digits  # Lazy: sklearn is slow to import.

        digits = load_digits()
        # 0..16 -> 0..255; 16 * 255 / 16 is exact, so the extremes map to 0 and 255.
        images = np.round(digits.images * (255 / 16)).astype(np.uint8)[..., None]  # [N, 8, 8, 1]
        labels = digits.target.astype(np.int64)
        test = np.zeros(len(labels), bool)
        test[stratified_test_indices(labels, NUM_TEST, _SPLIT_SEED)] = True
        return {
            "train": self._generate_examples(images, labels, np.flatnonzero(~test)),
            "test": self._generate_examples(images, labels, np.flatnonzero(test)),
        }

    def _generate_examples(self, images: np.ndarray, labels: np.ndarray, indices: np.ndarray):
        for i in indices:
            yield int(i), {"image": images[i], "label": labels[i]}
