"""Every notebook in colab/ is stored without outputs and runs top to bottom on CPU, offline,
twice in a row (as "Run all" twice in Colab).

The notebooks run in a fresh Jupyter kernel of this interpreter (nbclient, kernel `python3`)
in a temporary working directory, with `VIT_JAX_OFFLINE=1` (so they download nothing and
train their own tiny checkpoint), one CPU device and a temporary TFDS data dir.
"""

from __future__ import annotations

import copy
import os
import pathlib
import re

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((REPO_ROOT / "colab").glob("*.ipynb"))
CELL_TIMEOUT_S = 300  # Per cell; each notebook as a whole takes one to two minutes on 2 cores.
_DEVICE_COUNT_FLAG = re.compile(r"--xla_force_host_platform_device_count=\d+")


def _ids(path: pathlib.Path) -> str:
    return path.name


def test_colab_has_notebooks():
    assert NOTEBOOKS, f"no notebooks in {REPO_ROOT / 'colab'}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids)
def test_stored_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    assert notebook.metadata.kernelspec.name == "python3"
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code":
            assert not cell.outputs, f"{path.name}: cell {index} has stored outputs"
            assert cell.execution_count is None, f"{path.name}: cell {index} has a count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids)
def test_first_cell_says_how_to_run_it_in_colab(path):
    first = nbformat.read(path, as_version=4).cells[0]
    assert first.cell_type == "markdown"
    for needed in ("Colab", "Change runtime type", "TPU", "GPU", "REPO_URL", "PIP_SPEC"):
        assert needed in first.source, f"{path.name}: the first cell does not mention {needed}"


def _kernel_env(tmp_path: pathlib.Path) -> dict[str, str]:
    """This environment, offline, on one CPU device (not the 8 fake ones of conftest.py)."""
    env = dict(os.environ)
    flags = _DEVICE_COUNT_FLAG.sub("", env.get("XLA_FLAGS", "")).strip()
    if flags:
        env["XLA_FLAGS"] = flags
    else:
        env.pop("XLA_FLAGS", None)
    python_path = [str(REPO_ROOT), env.get("PYTHONPATH", "")]  # For `configs/`.
    env.update(
        VIT_JAX_OFFLINE="1",
        JAX_PLATFORMS="cpu",
        CUDA_VISIBLE_DEVICES="",
        TF_CPP_MIN_LOG_LEVEL="2",
        TFDS_DATA_DIR=str(tmp_path / "tensorflow_datasets"),
        HF_HUB_OFFLINE="1",
        MPLBACKEND="module://matplotlib_inline.backend_inline",
        PYTHONPATH=os.pathsep.join(p for p in python_path if p),
    )
    return env


def _check_outputs(cells: list, name: str) -> None:
    outputs = [out for cell in cells if cell.cell_type == "code" for out in cell.outputs]
    errors = [out for out in outputs if out.output_type == "error"]
    assert not errors, errors
    images = [out for out in outputs if "image/png" in out.get("data", {})]
    assert images, f"{name} displayed no figure"
    text = "".join(out.get("text", "") for out in outputs if out.output_type == "stream")
    assert "offline" in text, "the notebook did not notice VIT_JAX_OFFLINE=1"


@pytest.mark.slow  # CI runs it; `-m "not slow"` skips it in the inner loop.
@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids)
def test_runs_offline_on_cpu_twice(path, tmp_path):
    """ "Run all" twice in one kernel and directory: the second pass finds what the first
    wrote (finished training runs, prepared data, downloads) and must work as well."""
    notebook = nbformat.read(path, as_version=4)
    num_cells = len(notebook.cells)
    notebook.cells = notebook.cells + copy.deepcopy(notebook.cells)
    for index, cell in enumerate(notebook.cells):  # Cell ids must stay unique.
        cell.id = f"pass{index // num_cells}-{index % num_cells}"
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    client = nbclient.NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",  # Launched with sys.executable: this environment's ipykernel.
        resources={"metadata": {"path": str(workdir)}},
    )
    client.execute(env=_kernel_env(tmp_path))  # Raises CellExecutionError with the traceback.

    _check_outputs(notebook.cells[:num_cells], f"{path.name} (first run)")
    _check_outputs(notebook.cells[num_cells:], f"{path.name} (second run)")
