"""Input pipelines: TFDS / image folders / sharded ArrayRecords -> global, sharded jax.Arrays.

The data keys of the config, their defaults and meanings: `vit_jax/data/config.py` (the one
definition; `configs/base.py` takes them from there). `open_dataset(config)` reads them and
opens the dataset once per run; the iterators take what it returns. The training order is a
seeded global permutation per epoch over random-access records (`vit_jax.data.order`), so
the data position saved with each checkpoint is one batch index, a few hundred bytes.
"""

from vit_jax.data.config import default_config
from vit_jax.data.dataset import Dataset, DatasetInfo, get_dataset_info, open_dataset
from vit_jax.data.errors import DataError, DatasetNotPreparedError, UnknownNameError
from vit_jax.data.iterators import (
    EvalIterator,
    TrainIterator,
    make_eval_iterator,
    make_train_iterator,
)

__all__ = [
    "DataError",
    "Dataset",
    "DatasetInfo",
    "DatasetNotPreparedError",
    "EvalIterator",
    "TrainIterator",
    "UnknownNameError",
    "default_config",
    "get_dataset_info",
    "make_eval_iterator",
    "make_train_iterator",
    "open_dataset",
]
