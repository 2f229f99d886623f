"""The data config keys: every one documented, every one read by the pipeline."""

from __future__ import annotations

import inspect

import ml_collections

from vit_jax import data
from vit_jax.data import config as data_config

CONTRACT_KEYS = {
    "dataset",
    "tfds_data_dir",
    "tfds_manual_dir",
    "batch",
    "batch_eval",
    "prefetch",
    "seed",
    "pp.train",
    "pp.test",
    "pp.crop",
    "pp.train_ops",
    "pp.test_ops",
    "pp.aug",
    "pp.mixup_alpha",
    "pp.label_smoothing",
    "pp.multi_label",
    "pp.central_crop",
}


def _flat(cfg: ml_collections.ConfigDict, prefix: str = "") -> set[str]:
    keys = set()
    for k, v in cfg.items():
        keys |= (
            _flat(v, f"{prefix}{k}.") if isinstance(v, ml_collections.ConfigDict) else {prefix + k}
        )
    return keys


class _Recorder:
    """Looks like the config to the pipeline and notes every key it reads."""

    def __init__(self, cfg: ml_collections.ConfigDict, seen: set[str], prefix: str = ""):
        self._cfg, self._seen, self._prefix = cfg, seen, prefix

    def __getattr__(self, name: str):
        self._seen.add(self._prefix + name)
        value = self._cfg[name]
        if isinstance(value, ml_collections.ConfigDict):
            return _Recorder(value, self._seen, f"{self._prefix}{name}.")
        return value


def test_default_config_has_exactly_the_contract_keys():
    assert _flat(data.default_config()) == CONTRACT_KEYS


def test_every_key_is_defined_once_with_a_comment():
    """Each key is set on one line of default_config(), commented there or just above."""
    lines = inspect.getsource(data_config.default_config).splitlines()
    for key in CONTRACT_KEYS:
        at = [i for i, ln in enumerate(lines) if ln.strip().startswith(f"c.{key} =")]
        assert len(at) == 1, f"{key} is set {len(at)} times in vit_jax/data/config.py"
        line, above = lines[at[0]], lines[at[0] - 1].strip()
        assert "#" in line or above.startswith("#"), f"{key} has no comment: {line}"


def test_base_config_takes_the_data_keys_from_the_one_definition():
    from configs import base

    cfg, defaults = base.get_config(), data.default_config()
    for key in CONTRACT_KEYS:
        node, *rest = key.split(".")
        value = cfg[node][rest[0]] if rest else cfg[node]
        default = defaults[node][rest[0]] if rest else defaults[node]
        assert value == default, key
    source = inspect.getsource(base)
    assert "pp.crop" not in source and "batch_eval" not in source  # Not spelt out again.


def test_every_key_is_read(digits_config, mesh):
    seen: set[str] = set()
    cfg = _Recorder(digits_config(), seen)
    data.get_dataset_info(cfg)
    next(data.make_train_iterator(cfg, mesh))
    next(iter(data.make_eval_iterator(cfg, mesh)))
    assert seen >= CONTRACT_KEYS, CONTRACT_KEYS - seen
