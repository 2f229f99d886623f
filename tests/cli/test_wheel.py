"""The wheel works outside a checkout: built from the project's files, it holds the shipped
configs (one copy: the same files as configs/), and the README's main job runs from another
directory with only the unpacked wheel importable."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from tests.cli.conftest import REPO_ROOT, TINY, readme_main_job

SOURCES = ("pyproject.toml", "README.md", "vit_jax", "configs")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> str:
    """`pip wheel --no-deps` of a copy of the sources (the build leaves the checkout alone)."""
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        if (REPO_ROOT / name).is_dir():
            ignore = shutil.ignore_patterns("__pycache__")
            shutil.copytree(REPO_ROOT / name, source / name, ignore=ignore)
        else:
            shutil.copy(REPO_ROOT / name, source / name)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(out), str(source)],
        check=True, capture_output=True,
    )  # fmt: skip
    (path,) = out.glob("vit_jax-*.whl")
    return str(path)


def test_wheel_ships_each_config_once(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    configs = sorted(f"configs/{p.name}" for p in (REPO_ROOT / "configs").glob("*.py"))
    assert sorted(n for n in names if n.startswith("configs/")) == configs
    assert not [n for n in names if n.endswith("digits.py") and not n.startswith(
        ("configs/", "vit_jax/data/"))]  # fmt: skip
    assert "vit_jax/train.py" in names


def test_wheel_ships_the_native_sources(wheel):
    # The CPU custom calls are built on the user's machine from these files.
    names = zipfile.ZipFile(wheel).namelist()
    for source in (
        "onednn_batched_matmul.cc",
        "cblas_batched_matmul.cc",
        "openblas_binding.h",
        "mkl_binding.h",
        "batched_matmul_shapes.h",
    ):
        assert f"vit_jax/models/native/{source}" in names


@pytest.mark.slow  # CI runs it; `-m "not slow"` skips it in the inner loop.
def test_main_job_runs_from_the_installed_wheel_elsewhere(main_job, wheel, tmp_path):
    site = tmp_path / "site-packages"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere = tmp_path / "elsewhere"  # No configs/ here: the wheel's copy answers.
    elsewhere.mkdir()
    env = {**main_job.env, "PYTHONPATH": str(site)}  # Ahead of any editable install.
    imports = "import configs, vit_jax; print(configs.__file__, vit_jax.__file__)"
    where = subprocess.run(
        [sys.executable, "-c", imports],
        cwd=elsewhere, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert all(path.startswith(str(site)) for path in where.stdout.split()), where.stdout
    done = subprocess.run(
        [sys.executable, *readme_main_job(), *TINY], cwd=elsewhere, env=env,
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert os.path.exists(elsewhere / "workdirs" / "digits" / "ViT-digits.npz")
