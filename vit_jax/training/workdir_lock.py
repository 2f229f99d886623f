"""One trainer per workdir: an advisory lock held by process 0 for the whole run.

`workdir/LOCK` is locked with `flock` and holds who has it (host, pid, start time). The kernel
drops an flock when its process dies, however it dies (SIGKILL, OOM kill, reboot), so a lock
left by a killed run is simply free: the next run takes it over and says whose it was. A live
holder makes a second trainer stop at once with WorkdirError naming it.

Limits: flock is per host on most network file systems (NFS may not share it between hosts),
and object stores (`gs://`, `s3://`) have no locks at all: remote workdirs are not locked, and
the run says so. Multi-host jobs lock on process 0 only (the others write no shared files
outside Orbax's own coordinated saves).
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import socket
import time
from typing import Any

from vit_jax.errors import WorkdirError

LOCK_FILE = "LOCK"
_READ_RETRIES = 20  # The holder may be between truncating and writing its details.


class WorkdirLock:
    """`with WorkdirLock(workdir) as lock:` holds the workdir; `lock.previous` is the stale
    holder that was taken over, if any."""

    def __init__(self, workdir: str):
        self.path = os.path.join(workdir, LOCK_FILE)
        self.previous: dict[str, Any] | None = None
        self._fd: int | None = None

    def acquire(self) -> WorkdirLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = describe_holder(_read_holder(fd))
            os.close(fd)
            raise WorkdirError(
                f"{os.path.dirname(self.path)} is in use by another trainer ({holder}; lock "
                f"file {self.path}). Wait for it to finish, stop it, or pass another "
                "--workdir."
            ) from None
        except OSError as e:  # A file system without flock: say so rather than run unlocked.
            os.close(fd)
            raise WorkdirError(
                f"Cannot lock {self.path} ({e}): this file system has no file locks. Use a "
                "local workdir, or make sure only one trainer uses it and delete the LOCK file."
            ) from e
        previous = _read_holder(fd, retries=1)
        self.previous = previous or None
        now = datetime.datetime.now(datetime.timezone.utc)
        me = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "start_time": now.isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)  # An empty LOCK file: nobody holds it.
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> WorkdirLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_holder(fd: int, retries: int = _READ_RETRIES) -> dict[str, Any]:
    for attempt in range(retries):
        try:
            raw = os.pread(fd, 4096, 0)
            return json.loads(raw) if raw else {}
        except ValueError:
            if attempt + 1 < retries:
                time.sleep(0.05)
    return {}


def describe_holder(holder: dict[str, Any]) -> str:
    """`host H, pid P, started T` for a message."""
    if not holder:
        return "holder details not written yet"
    return f"host {holder.get('host')}, pid {holder.get('pid')}, started {holder.get('start_time')}"
