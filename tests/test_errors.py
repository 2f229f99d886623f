"""One base for user-facing errors, and every command line reports them the same way."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import vit_jax
from vit_jax.errors import USER_ERROR_EXIT, VitJaxError

# Raised and caught inside the checkpoint code, never shown as such (they become messages).
INTERNAL = {"Damage", "CheckpointDamaged", "CheckpointMismatch"}


def _exception_classes() -> list[type]:
    found = {}
    for info in pkgutil.walk_packages(vit_jax.__path__, "vit_jax."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, Exception)
                and value.__module__.startswith("vit_jax")
            ):
                found[f"{value.__module__}.{name}"] = value
    return sorted(found.values(), key=lambda c: c.__qualname__)


def test_every_user_error_derives_from_the_one_base():
    classes = _exception_classes()
    assert len(classes) >= 10
    strays = [c.__qualname__ for c in classes if not issubclass(c, VitJaxError)]
    assert sorted(strays) == sorted(INTERNAL)


def _commands(tmp_path):
    missing = str(tmp_path / "missing.npz")
    out = str(tmp_path / "out")
    return {
        "vit_jax.train": ["--config=configs/digits.py", f"--workdir={out}", "--config.nope=1"],
        "vit_jax.infer": ["--checkpoint", missing, "--image", str(tmp_path / "a.jpg")],
        "vit_jax.convert.cli": [missing, out, "--to", "hf"],
        "vit_jax.export": [missing, out],
        "vit_jax.figures": [missing, out],
        "vit_jax.fewshot.cli": ["--checkpoint", missing, "--dataset", "digits"],
        "vit_jax.data.records": ["convert", str(tmp_path / "none"), out],
    }


@pytest.mark.parametrize(
    "module",
    [
        "vit_jax.train",
        "vit_jax.infer",
        "vit_jax.convert.cli",
        "vit_jax.export",
        "vit_jax.figures",
        "vit_jax.fewshot.cli",
        "vit_jax.data.records",
    ],
)
def test_every_command_line_reports_a_bad_input_the_same_way(module, tmp_path, capsys):
    argv = _commands(tmp_path)[module]
    main = importlib.import_module(module).main
    code = main(["prog", *argv]) if module == "vit_jax.train" else main(argv)
    _, err = capsys.readouterr()
    assert code == USER_ERROR_EXIT
    assert err.startswith("Error: ") and "Traceback" not in err, err
