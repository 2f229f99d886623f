"""Transparent huge pages for XLA:CPU's large buffers: `python -m vit_jax.train` (and `infer`)
re-execute themselves once with glibc's `glibc.malloc.hugetlb=1` tunable.

Why: the CPU client allocates each step's temporary buffer (1.19 GB for a ViT-B/16 batch-8
training step) with `posix_memalign` and frees it after the step; glibc serves a block that
large with a fresh `mmap`, so every step takes ~300,000 minor page faults (4 KiB each, zeroed
by the kernel). With the tunable, glibc asks for transparent huge pages on its mappings and
the faults drop to ~1,000 per step: the ViT-B/16 trainer step gains 1.03-1.11x in most runs
(up to 1.28x), a batch-32 forward about 4% (benchmarks/RESULTS.md, "Page faults"). Neither
JAX nor XLA has an allocator option, and glibc reads tunables only when a process starts,
hence the re-execution (PyTorch's CPU launcher, `torch.backends.xeon.run_cpu`, also sets its
allocator through the environment).

When: the process was started as `python ... -m <that module>`, on Linux with glibc 2.35 or
later (the tunable's first release), and the kernel's THP mode is `madvise` (with `always`
glibc's mappings get huge pages anyway; with `never` they cannot). Not when GLIBC_TUNABLES
already names the tunable (the user's value wins), not twice (a marker variable), not under a
debugger or tracer, and not when VIT_JAX_HUGE_PAGES=0 (the opt-out). A module run some other
way (`runpy`, IPython's `%run -m`) is left alone: an exec would replace the host program.
The process keeps its PID, arguments, environment and inheritable file descriptors; if the
exec fails, the command goes on without huge pages.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

TUNABLE = "glibc.malloc.hugetlb"
OPT_OUT = "VIT_JAX_HUGE_PAGES"
# Set in the re-executed process, so that it never re-executes again, whatever a wrapper of
# the interpreter does to GLIBC_TUNABLES.
MARKER = "VIT_JAX_HUGE_PAGES_REEXECUTED"
_THP_MODE_FILE = "/sys/kernel/mm/transparent_hugepage/enabled"
_FIRST_GLIBC = (2, 35)


def glibc_version() -> tuple[int, int] | None:
    """(major, minor) of the running C library if it is glibc, else None (musl, macOS)."""
    try:
        name, version = os.confstr("CS_GNU_LIBC_VERSION").split()  # "glibc 2.36"
        major, minor = version.split(".")[:2]
        return (int(major), int(minor)) if name == "glibc" else None
    except (AttributeError, OSError, ValueError):
        return None


def thp_mode(path: str = _THP_MODE_FILE) -> str | None:
    """The kernel's transparent-huge-page mode ("always", "madvise", "never"), None if unknown."""
    try:
        with open(path) as f:
            words = f.read().split()  # "always [madvise] never": the bracketed one is in force.
    except OSError:
        return None
    chosen = [w[1:-1] for w in words if w.startswith("[") and w.endswith("]")]
    return chosen[0] if chosen else None


def environment_with_huge_pages(
    environ: Mapping[str, str], glibc: tuple[int, int] | None, thp: str | None
) -> dict[str, str] | None:
    """The environment to re-execute with, or None when the process should go on as it is."""
    if environ.get(OPT_OUT, "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    if MARKER in environ or glibc is None or glibc < _FIRST_GLIBC or thp != "madvise":
        return None
    tunables = environ.get("GLIBC_TUNABLES", "")
    if any(_is_ours(item) for item in tunables.split(":")):
        return None
    env = dict(environ)
    env["GLIBC_TUNABLES"] = f"{tunables}:{TUNABLE}=1" if tunables else f"{TUNABLE}=1"
    env[MARKER] = "1"
    return env


def environment_without_huge_pages(environ: Mapping[str, str]) -> dict[str, str]:
    """`environ` less the tunable (other tunables kept), opted out of a re-exec: for a child
    process that should run as if vit_jax had not set it (a benchmark's other framework)."""
    env = dict(environ)
    kept = [t for t in env.pop("GLIBC_TUNABLES", "").split(":") if t and not _is_ours(t)]
    if kept:
        env["GLIBC_TUNABLES"] = ":".join(kept)
    env[OPT_OUT] = "0"
    return env


def _is_ours(tunable_item: str) -> bool:
    return tunable_item.split("=")[0] == TUNABLE


def started_as_module(orig_argv: Sequence[str], module: str) -> bool:
    """Whether the interpreter's own command line ran `module` with `-m` (so an exec of the
    same command line runs it again, and nothing else is replaced)."""
    args = list(orig_argv[1:])
    return any(a == "-m" and args[i + 1 : i + 2] == [module] for i, a in enumerate(args))


def reexec_with_huge_pages(module: str) -> None:
    """Replaces this process by the same command line with the tunable set, when it applies.

    Call it first thing under `if __name__ == "__main__"` of `module`, before the heavy imports:
    everything done before the exec is done twice. Returns only when nothing was (or could
    be) done.
    """
    if not sys.platform.startswith("linux") or not sys.executable or sys.gettrace() is not None:
        return
    if not started_as_module(getattr(sys, "orig_argv", []), module):
        return
    env = environment_with_huge_pages(os.environ, glibc_version(), thp_mode())
    if env is None:
        return
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    try:
        os.execve(sys.executable, sys.orig_argv, env)
    except (OSError, ValueError):
        return  # An unusual interpreter setup; the command works without huge pages.
