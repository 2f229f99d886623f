"""The data config keys: every one documented, every one read by the pipeline."""

from __future__ import annotations

import ml_collections

from vit_jax import data

CONTRACT_KEYS = {
    "dataset",
    "tfds_data_dir",
    "tfds_manual_dir",
    "batch",
    "batch_eval",
    "shuffle_buffer",
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


def test_every_key_is_documented_with_its_default():
    doc = data.__doc__
    cfg = data.default_config()
    for key in CONTRACT_KEYS:
        node, *rest = key.split(".")
        default = cfg[node][rest[0]] if rest else cfg[node]
        line = next((ln for ln in doc.splitlines() if ln.strip().startswith(f"{key} =")), None)
        assert line is not None, f"{key} is not documented in vit_jax/data/__init__.py"
        assert repr(default).replace("50000", "50_000") in line, (key, line)


def test_every_key_is_read(digits_config, mesh):
    seen: set[str] = set()
    cfg = _Recorder(digits_config(), seen)
    data.get_dataset_info(cfg)
    next(data.make_train_iterator(cfg, mesh))
    next(iter(data.make_eval_iterator(cfg, mesh)))
    assert seen >= CONTRACT_KEYS, CONTRACT_KEYS - seen
