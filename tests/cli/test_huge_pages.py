"""cli/huge_pages.py: when the command line re-executes itself with glibc's huge-page tunable,
that glibc then backs a large malloc with huge pages, and that `python -m vit_jax.train` does it
before parsing its config."""

from __future__ import annotations

import os
import pathlib
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
    assert env == {"HOME": "/h", **environ, "GLIBC_TUNABLES": expected_tunables}


@pytest.mark.parametrize(
    ("environ", "glibc", "thp"),
    [
        ({"GLIBC_TUNABLES": SET}, GLIBC, "madvise"),  # The re-executed process: no loop.
        ({"GLIBC_TUNABLES": f"glibc.malloc.arena_max=2:{huge_pages.TUNABLE}=0"}, GLIBC, "madvise"),
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
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", huge_pages.OPT_OUT)}
    pythonpath = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    return {**env, "PYTHONPATH": pythonpath, **extra}


def _applies_here() -> bool:
    system = (huge_pages.glibc_version(), huge_pages.thp_mode())
    return huge_pages.environment_with_huge_pages({}, *system) is not None


needs_madvise_thp = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not _applies_here(),
    reason="needs Linux, glibc >= 2.35 and THP mode `madvise`, where the re-exec applies",
)

# Re-executes like a command line, then mallocs 256 MiB through glibc (not numpy, which
# advises huge pages itself) and reports the process's anonymous huge pages.
PROBE = """
import ctypes, os
from vit_jax.cli import huge_pages
huge_pages.reexec_with_huge_pages()
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
size = 256 << 20
ctypes.memset(libc.malloc(size), 1, size)
rollup = open("/proc/self/smaps_rollup").read()
print(os.environ.get("GLIBC_TUNABLES"), rollup.split("AnonHugePages:")[1].split()[0])
"""


@needs_madvise_thp
def test_a_large_malloc_gets_huge_pages_after_the_re_exec():
    def probe(**extra: str) -> tuple[str, int]:
        out = subprocess.run(
            [sys.executable, "-c", PROBE], env=_clean_env(**extra), capture_output=True,
            text=True, check=True, cwd=REPO_ROOT,
        ).stdout.split()  # fmt: skip
        return out[0], int(out[1])

    tunables, huge_kib = probe()
    assert tunables == SET
    assert huge_kib >= 200 << 10  # Of the 256 MiB (the ends may miss a 2 MiB boundary).
    tunables, huge_kib = probe(VIT_JAX_HUGE_PAGES="0")
    assert tunables == "None"
    assert huge_kib < 32 << 10


@needs_madvise_thp
def test_train_command_line_re_executes_before_reading_its_config(tmp_path):
    """The config file is Python the trainer runs: it records the environment it sees."""
    seen = tmp_path / "seen.txt"
    config = tmp_path / "probe_config.py"
    config.write_text(
        "import os, pathlib\n"
        "def get_config():\n"
        f"    pathlib.Path({str(seen)!r}).write_text(os.environ.get('GLIBC_TUNABLES', 'unset'))\n"
        "    raise SystemExit(0)\n"
    )
    command = [sys.executable, "-m", "vit_jax.train", f"--config={config}", "--workdir=w"]
    for extra, expected in (({}, SET), ({"VIT_JAX_HUGE_PAGES": "0"}, "unset")):
        subprocess.run(command, env=_clean_env(**extra), cwd=tmp_path, check=True, timeout=300)
        assert seen.read_text() == expected
