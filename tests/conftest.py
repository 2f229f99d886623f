"""Test setup: 8 fake CPU devices (for mesh/sharding tests) and quiet TensorFlow.

XLA reads XLA_FLAGS when the backend starts, so this must run before anything imports jax.
"""

import os

import pytest

os.environ["XLA_FLAGS"] = " ".join(
    [os.environ.get("XLA_FLAGS", ""), "--xla_force_host_platform_device_count=8"]
).strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# TensorFlow must not grab every core or any accelerator that JAX wants.
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


# pytest-xdist (`-n`, on by default in pyproject.toml) runs the tests in worker processes. Its
# scheduler below hands out whole groups: a test file, so module fixtures are built once; a
# whole directory where conftest.py builds costly session fixtures (a trained model, the main
# job) that each worker would otherwise build again; or one test, for the notebooks, which
# share nothing and are the slowest. Workers order files with slow tests first, so that no
# worker is left with a long one at the end. (xdist's own `loadgroup` marks do not survive
# pytest 9.2's node ids, hence the scheduler.)
_DIRECTORY_GROUPS = ("cli", "data", "fewshot", "infer", "training/reliability")
_ONE_TEST_GROUPS = ("notebooks/",)


def _group_of(nodeid: str) -> str:
    """The group of `tests/<path>::<test>`: the directory, the file or the test itself."""
    path = nodeid.split("::", 1)[0].removeprefix("tests/")
    for directory in _DIRECTORY_GROUPS:
        if path.startswith(directory + "/"):
            return directory
    return nodeid if path.startswith(_ONE_TEST_GROUPS) else path


@pytest.hookimpl(optionalhook=True, tryfirst=True)  # Optional: a hook of pytest-xdist.
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    if config.getoption("dist") != "loadscope":  # Another --dist on the command line wins.
        return None
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        """xdist's scheduling by scope (one scope at a time per worker), scopes being groups."""

        def _split_scope(self, nodeid: str) -> str:
            return _group_of(nodeid)

    return GroupScheduling(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In workers: the files holding a slow test first, each file's tests kept together (in
    order), so that module fixtures are built once."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        slow_files = {item.path for item in items if item.get_closest_marker("slow")}
        items.sort(key=lambda item: item.path not in slow_files)  # Stable: files stay whole.
