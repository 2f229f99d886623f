"""cli/huge_pages.py: when a command line re-executes itself with glibc's huge-page tunable,
that glibc then backs a large malloc with huge pages, and that `python -m vit_jax.train` and
`vit_jax.infer` re-execute before their heavy imports."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest

from vit_jax.cli import huge_pages

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
GLIBC = (2, 36)
SET = f"{huge_pages.TUNABLE}=1"


@pytest.mark.parametrize(
    ("environ", "glibc", "thp", "expected_tunables"),
    [
        ({}, GLIBC, "madvise", SET),
        ({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, GLIBC, "madvise",
         f"glibc.malloc.arena_max=2:{SET}"),
        ({"VIT_JAX_HUGE_PAGES": "1"}, (2, 35), "madvise", SET),
    ],
)  # fmt: skip
def test_re_executes_with_the_tunable_added(environ, glibc, thp, expected_tunables):
    env = huge_pages.environment_with_huge_pages({"HOME": "/h", **environ}, glibc, thp)
    expected = {"HOME": "/h", **environ, "GLIBC_TUNABLES": expected_tunables}
    assert env == {**expected, huge_pages.MARKER: "1"}


@pytest.mark.parametrize(
    ("environ", "glibc", "thp"),
    [
        ({"GLIBC_TUNABLES": SET}, GLIBC, "madvise"),
        ({"GLIBC_TUNABLES": f"glibc.malloc.arena_max=2:{huge_pages.TUNABLE}=0"}, GLIBC, "madvise"),
        ({huge_pages.MARKER: "1"}, GLIBC, "madvise"),  # Re-executed already: never a loop.
        ({"VIT_JAX_HUGE_PAGES": "0"}, GLIBC, "madvise"),
        ({"VIT_JAX_HUGE_PAGES": "off"}, GLIBC, "madvise"),
        ({}, (2, 34), "madvise"),  # glibc before the tunable existed.
        ({}, None, "madvise"),  # musl or not Linux.
        ({}, GLIBC, "always"),  # The kernel gives huge pages anyway.
        ({}, GLIBC, "never"),
        ({}, GLIBC, None),
    ],
)  # fmt: skip
def test_goes_on_unchanged(environ, glibc, thp):
    assert huge_pages.environment_with_huge_pages(environ, glibc, thp) is None


def test_without_huge_pages_drops_only_the_tunable_and_opts_out():
    environ = {"HOME": "/h", "GLIBC_TUNABLES": f"glibc.malloc.arena_max=2:{SET}"}
    assert huge_pages.environment_without_huge_pages(environ) == {
        "HOME": "/h",
        "GLIBC_TUNABLES": "glibc.malloc.arena_max=2",
        huge_pages.OPT_OUT: "0",
    }


@pytest.mark.parametrize(
    ("orig_argv", "started"),
    [
        (["python", "-m", "vit_jax.train", "--workdir=w"], True),
        (["/usr/bin/python3", "-X", "importtime", "-m", "vit_jax.train"], True),
        (["python", "-m", "vit_jax.infer"], False),  # Another module.
        (["python", "-c", "import runpy; runpy.run_module('vit_jax.train')"], False),
        (["ipykernel_launcher.py", "-f", "kernel.json"], False),  # IPython's %run -m.
        (["python", "-m"], False),
        ([], False),  # An embedded interpreter.
    ],
)
def test_only_a_command_line_that_ran_the_module_is_executed_again(orig_argv, started):
    assert huge_pages.started_as_module(orig_argv, "vit_jax.train") is started


@pytest.mark.parametrize(
    ("text", "mode"),
    [("always [madvise] never\n", "madvise"), ("[always] madvise never\n", "always"), ("", None)],
)
def test_reads_the_bracketed_thp_mode(tmp_path, text, mode):
    path = tmp_path / "enabled"
    path.write_text(text)
    assert huge_pages.thp_mode(str(path)) == mode
    assert huge_pages.thp_mode(str(tmp_path / "missing")) is None


def _clean_env(**extra: str) -> dict[str, str]:
    """This environment without the variables the re-exec reads or sets, plus `extra`."""
    ours = ("GLIBC_TUNABLES", huge_pages.OPT_OUT, huge_pages.MARKER)
    env = {k: v for k, v in os.environ.items() if k not in ours}
    paths = (extra.pop("PYTHONPATH", None), str(REPO_ROOT), env.get("PYTHONPATH"))
    return {**env, "PYTHONPATH": os.pathsep.join(p for p in paths if p), **extra}


def _applies_here() -> bool:
    system = (huge_pages.glibc_version(), huge_pages.thp_mode())
    return huge_pages.environment_with_huge_pages({}, *system) is not None


needs_madvise_thp = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not _applies_here(),
    reason="needs Linux, glibc >= 2.35 and THP mode `madvise`, where the re-exec applies",
)

# A module that re-executes like the command lines, then mallocs 256 MiB through glibc (not
# numpy, which advises huge pages itself) and reports the process's anonymous huge pages and
# the kernel's count of huge-page faults that fell back to small pages meanwhile.
PROBE = """
import ctypes, os
from vit_jax.cli import huge_pages
huge_pages.reexec_with_huge_pages("thp_probe")

def fallbacks():
    counts = dict(line.split() for line in open("/proc/vmstat"))
    return int(counts.get("thp_fault_fallback", 0))

libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
size = 256 << 20
before = fallbacks()
ctypes.memset(libc.malloc(size), 1, size)
rollup = open("/proc/self/smaps_rollup").read()
huge_kib = rollup.split("AnonHugePages:")[1].split()[0]
print(os.environ.get("GLIBC_TUNABLES"), huge_kib, fallbacks() - before)
"""


@needs_madvise_thp
def test_a_large_malloc_gets_huge_pages_after_the_re_exec(tmp_path):
    (tmp_path / "thp_probe.py").write_text(PROBE)

    def probe(**extra: str) -> tuple[str, int]:
        env = _clean_env(PYTHONPATH=str(tmp_path), **extra)
        out = subprocess.run(
            [sys.executable, "-m", "thp_probe"], env=env, capture_output=True, text=True,
            check=True, cwd=tmp_path,
        ).stdout.split()  # fmt: skip
        # A fault the kernel could not serve with a huge page (no free 2 MiB block) still
        # shows that glibc advised them: count it as the 2 MiB it asked for.
        return out[0], int(out[1]) + 2048 * int(out[2])

    tunables, advised_kib = probe()
    assert tunables == SET
    assert advised_kib >= 200 << 10  # Of the 256 MiB (the ends may miss a 2 MiB boundary).
    tunables, advised_kib = probe(VIT_JAX_HUGE_PAGES="0")
    assert tunables == "None"
    assert advised_kib < 32 << 10


def _imports(stderr: str, module: str) -> int:
    """How many times `python -X importtime` output shows `module` imported (once per process)."""
    return len(re.findall(rf"^import time:.*\|\s+{re.escape(module)}$", stderr, re.MULTILINE))


@needs_madvise_thp
@pytest.mark.parametrize("module", ["vit_jax.train", "vit_jax.infer"])
def test_command_line_re_executes_before_its_heavy_imports(tmp_path, module):
    """The train config file is Python the trainer runs: it records the environment it sees.
    `-X importtime` shows the re-exec: the first process imports huge_pages, not jax."""
    seen = tmp_path / "seen.txt"
    config = tmp_path / "probe_config.py"
    config.write_text(
        "import os, pathlib\n"
        "def get_config():\n"
        f"    pathlib.Path({str(seen)!r}).write_text(os.environ.get('GLIBC_TUNABLES', 'unset'))\n"
        "    raise SystemExit(0)\n"
    )
    args = [f"--config={config}", "--workdir=w"] if module == "vit_jax.train" else ["--help"]
    command = [sys.executable, "-X", "importtime", "-m", module, *args]
    for extra, processes, tunables in (({}, 2, SET), ({huge_pages.OPT_OUT: "0"}, 1, "unset")):
        done = subprocess.run(
            command, env=_clean_env(**extra), cwd=tmp_path, capture_output=True, text=True,
            check=True, timeout=300,
        )  # fmt: skip
        assert _imports(done.stderr, "vit_jax.cli.huge_pages") == processes, done.stderr[-2000:]
        assert _imports(done.stderr, "jax") == 1, done.stderr[-2000:]
        if module == "vit_jax.train":
            assert seen.read_text() == tunables
