"""README.md as a new user reads it: every ```python block runs verbatim in a fresh clone after
the main job (and the README's export command, which one block loads), each in its own
interpreter; the main job's figures agree with their source, `configs/digits.py`."""

from __future__ import annotations

import re

import pytest

from configs import digits
from tests.cli.conftest import README, REPO_ROOT

TEXT = README.read_text()
BLOCKS = re.findall(r"^```python\n(.*?)^```", TEXT, flags=re.M | re.S)


def test_readme_has_python_blocks():
    assert BLOCKS, "README.md has no ```python block"


@pytest.fixture(scope="module")
def readme_commands(main_job):
    """The README's export command, run as written (its artifact is what a block loads)."""
    match = re.search(r"python -m (vit_jax\.export \S+ \S+)", TEXT)
    assert match, "README.md has no `python -m vit_jax.export CKPT OUT` command"
    main_job.run("-m", *match.group(1).split())
    return main_job


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_python_block_runs(readme_commands, index):
    readme_commands.run("-c", BLOCKS[index])


def test_main_job_figures_come_from_the_config():
    """configs/digits.py states the expected accuracy; the README and notebook quote it."""
    found = re.search(r"(\d+(?:\.\d+)?)% test accuracy", digits.__doc__)
    assert found, "configs/digits.py's docstring states no '<n>% test accuracy'"
    figure = found.group(1)
    assert f"({figure}% test accuracy" in TEXT
    notebook = (REPO_ROOT / "colab" / "vit_jax.ipynb").read_text()
    quoted = set(re.findall(r"full config's (\d+(?:\.\d+)?)%", notebook))
    assert quoted == {figure}, quoted
