"""Every key of the base config is read by a training run (no dead or miswired keys)."""

from __future__ import annotations

import ml_collections
import pytest

from configs import base
from tests.training import tiny_config
from vit_jax.training.loop import train_and_evaluate


def key_paths(config: ml_collections.ConfigDict, prefix: str = "") -> dict[tuple[int, str], str]:
    """`(id of the ConfigDict holding it, key) -> 'a.b.key'` for every key of `config`."""
    paths = {}
    for key, value in config.items():
        paths[(id(config), key)] = prefix + key
        if isinstance(value, ml_collections.ConfigDict):
            paths.update(key_paths(value, f"{prefix}{key}."))
    return paths


@pytest.fixture
def reads(monkeypatch):
    """Records `(id(configdict), key)` for every key read from any ConfigDict."""
    seen: set[tuple[int, str]] = set()
    cls = ml_collections.ConfigDict
    getitem, get, to_dict = cls.__getitem__, cls.get, cls.to_dict

    def record_all(config):
        for key, value in config.items():
            seen.add((id(config), key))
            if isinstance(value, cls):
                record_all(value)

    def patched_getitem(self, key):
        seen.add((id(self), key))
        return getitem(self, key)

    def patched_get(self, key, default=None):
        seen.add((id(self), key))
        return get(self, key, default)

    def patched_to_dict(self, *args, **kwargs):
        record_all(self)
        return to_dict(self, *args, **kwargs)

    monkeypatch.setattr(cls, "__getitem__", patched_getitem)
    monkeypatch.setattr(cls, "get", patched_get)
    monkeypatch.setattr(cls, "to_dict", patched_to_dict)
    return seen


@pytest.mark.slow  # CI runs it; `-m "not slow"` skips it in the inner loop.
def test_every_base_key_is_read(reads, tmp_path):
    # From scratch with SGD and custom ops, then fine-tuning its .npz with Adam, the sigmoid
    # loss and the default ops: between them, every key is needed.
    scratch = tiny_config.get_config()
    scratch.update(total_steps=2, save_npz="tiny.npz")
    scratch.model.model_name = "tiny"
    finetune = tiny_config.get_config()
    finetune.update(total_steps=1, optimizer="adam", loss="sigmoid_xent")
    finetune.update(pretrained_dir=str(tmp_path / "scratch"))
    finetune.pp.update(train_ops="", test_ops="", central_crop=True)
    finetune.model.model_name = "tiny"
    paths = {**key_paths(scratch), **key_paths(finetune)}
    reads.clear()

    train_and_evaluate(scratch, str(tmp_path / "scratch"))
    train_and_evaluate(finetune, str(tmp_path / "finetune"))

    read = {paths[r] for r in reads if r in paths}
    assert set(key_paths(base.get_config()).values()) - read == set()
