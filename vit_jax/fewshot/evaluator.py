"""`FewShotEvaluator`: few-shot linear accuracy of a model's frozen features, per dataset.

For each dataset: features of a training subset and of the test split (one pass each, with
the model's sharded forward), then for each seed a per-class draw (`sampling`) and for each
shot count a ridge fit (`ridge.evaluate`, which picks the regularisation on held-out
training examples). Accuracies are averaged over the seeds.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh

from vit_jax import data
from vit_jax.errors import ConfigError
from vit_jax.fewshot import features, ridge, sampling
from vit_jax.fewshot.report import Results
from vit_jax.models import VisionTransformer


@dataclasses.dataclass(frozen=True)
class Splits:
    train: str  # Few-shot examples are drawn from here (a subset keeps each pass cheap).
    test: str  # Accuracy is measured here ('' = the dataset's preset evaluation split).


# The datasets of the paper's few-shot figures, and the offline digits. A training subset
# large enough for 25 shots + 5 held-out per class; other names use 'train' and their preset.
PRESETS: dict[str, Splits] = {
    "imagenet2012": Splits("train[:5%]", "validation"),  # ~64 images per class.
    "cifar10": Splits("train[:10000]", "test"),
    "cifar100": Splits("train[:20000]", "test"),
    "oxford_iiit_pet": Splits("train", "test"),  # ~100 per class.
    "oxford_flowers102": Splits("train+validation", "test"),  # 20 per class: up to 15 shots.
    "digits": Splits("train", "test"),
}


def splits_for(dataset: str) -> Splits:
    return PRESETS.get(dataset, Splits("train", ""))


def data_config(
    config: ml_collections.ConfigDict, dataset: str, split: str, crop: int
) -> ml_collections.ConfigDict:
    """A copy of the run's data config reading `split` of `dataset` at `crop` x `crop`.

    The evaluation pipeline (resize to crop, no augmentation, one-hot labels) reads it;
    custom op strings of the run are dropped, since they belong to the run's dataset. Few-shot
    datasets are single-label: the fit's targets are one class per image.
    """
    config = copy.deepcopy(config)
    with config.unlocked():
        config.dataset = dataset
        config.pp.test = split
        config.pp.crop = crop
        config.pp.train_ops = ""
        config.pp.test_ops = ""
        config.pp.central_crop = False
        config.pp.multi_label = False
    return config


@dataclasses.dataclass(frozen=True)
class Settings:
    """What to evaluate: `config.fewshot` of a training run, or the CLI's flags."""

    datasets: tuple[str, ...]
    shots: tuple[int, ...] = (1, 5, 10, 25)
    seeds: int = 3
    holdout: int = 5

    @classmethod
    def from_config(cls, fewshot: ml_collections.ConfigDict) -> Settings:
        return cls(
            datasets=tuple(fewshot.datasets),
            shots=tuple(int(n) for n in fewshot.shots),
            seeds=int(fewshot.seeds),
            holdout=int(fewshot.holdout),
        )

    def check(self) -> None:
        """Raises ConfigError for values that cannot work, naming the config key."""
        if not self.shots or any(n < 1 for n in self.shots):
            raise ConfigError(f"fewshot.shots must be positive integers, got {self.shots}.")
        if self.seeds < 1:
            raise ConfigError(f"fewshot.seeds must be at least 1, got {self.seeds}.")
        if self.holdout < 1:
            raise ConfigError(
                f"fewshot.holdout must be at least 1 (held-out examples per class choose the "
                f"regularisation), got {self.holdout}."
            )
        if any(not isinstance(name, str) or not name for name in self.datasets):
            raise ConfigError(f"fewshot.datasets must be dataset names, got {self.datasets}.")


@dataclasses.dataclass(frozen=True)
class _Dataset:
    name: str
    num_classes: int
    train: data.EvalIterator
    test: data.EvalIterator


class FewShotEvaluator:
    """Few-shot accuracies of a model (parameters in `param_shardings`) on `settings.datasets`.

    `config` supplies the data settings (TFDS dirs, `batch_eval`, prefetch); images are read
    at `image_size`, the model's resolution.
    """

    def __init__(
        self,
        settings: Settings,
        config: ml_collections.ConfigDict,
        mesh: Mesh,
        model: VisionTransformer,
        param_shardings: Any,
        image_size: int,
    ):
        settings.check()
        self.settings = settings
        self.notes: list[str] = []  # Shot counts skipped for lack of examples, once each.
        self._feature_fn = features.make_feature_fn(model, param_shardings, mesh)
        self._datasets = []
        for name in settings.datasets:
            splits = splits_for(name)
            train_config = data_config(config, name, splits.train, image_size)
            train_data = data.open_dataset(train_config)  # Opened once for both uses.
            self._datasets.append(
                _Dataset(
                    name=name,
                    num_classes=train_data.info.num_classes,
                    train=data.make_eval_iterator(train_config, mesh, dataset=train_data),
                    test=data.make_eval_iterator(
                        data_config(config, name, splits.test, image_size), mesh
                    ),
                )
            )

    def evaluate(self, params: Any) -> Results:
        """`{dataset: {shots: accuracy}}`, averaged over the seeds; see the module doc."""
        return {ds.name: self._evaluate_dataset(params, ds) for ds in self._datasets}

    def _evaluate_dataset(self, params: Any, ds: _Dataset) -> dict[int, float]:
        train_x, train_y = features.extract(self._feature_fn, params, ds.train)  # [n, F], [n]
        test_x, test_y = features.extract(self._feature_fn, params, ds.test)  # [m, F], [m]
        holdout = self.settings.holdout
        most = sampling.max_shots(train_y, ds.num_classes, holdout)
        shots = [n for n in self.settings.shots if n <= most]
        self._note_skipped(ds, [n for n in self.settings.shots if n > most], most, len(train_y))
        accuracies: dict[int, list[float]] = {n: [] for n in shots}
        for seed in range(self.settings.seeds):
            draw = sampling.split(train_y, ds.num_classes, holdout, seed)
            for n in shots:
                fit = draw.shots(n)  # [K * n]
                accuracy, _ = ridge.evaluate(
                    train_x[fit],
                    train_y[fit],
                    train_x[draw.holdout],
                    train_y[draw.holdout],
                    test_x,
                    test_y,
                    ds.num_classes,
                )
                accuracies[n].append(accuracy)
        return {n: float(np.mean(values)) for n, values in accuracies.items()}

    def _note_skipped(self, ds: _Dataset, skipped: Sequence[int], most: int, size: int):
        note = (
            f"few-shot {ds.name}: skipped {list(skipped)} shots; the smallest class of its "
            f"{size} training examples ({splits_for(ds.name).train!r}) has room for {most} "
            f"after {self.settings.holdout} held-out. Use fewer shots or a larger split."
        )
        if skipped and note not in self.notes:
            self.notes.append(note)
            if jax.process_index() == 0:
                print(note, flush=True)


def for_run(config: ml_collections.ConfigDict, mesh: Mesh, trainer: Any) -> FewShotEvaluator | None:
    """The evaluator of a training run (`config.fewshot`), on its mesh and parameter layout."""
    if not config.fewshot.datasets:
        return None
    return FewShotEvaluator(
        Settings.from_config(config.fewshot),
        config,
        mesh,
        trainer.model,
        trainer.state_shardings.params,
        trainer.image_size,
    )
