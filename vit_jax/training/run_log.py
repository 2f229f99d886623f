"""A run's log file: library diagnostics go to `workdir/train.log`, not to the console.

Orbax, TensorStore's Python side and asyncio report a failed write or read as pages of
tracebacks (hundreds of lines for one full disk). During a run those loggers write to the log
file only; the console gets the trainer's one-paragraph message, which points at the file.
`verbose=True` keeps them on the console as well.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

LOG_FILE = "train.log"
DIVERTED = ("absl", "asyncio", "orbax", "jax._src.distributed")  # Loggers that spill tracebacks.
_DETAILS = logging.getLogger("vit_jax.details")  # Full tracebacks of reported errors.


class _LogFile(logging.FileHandler):
    """A log file that stays silent when it cannot be written (a full disk): the failure
    that filled the disk is reported by the trainer, not as logging's own traceback."""

    def handleError(self, record: logging.LogRecord) -> None:
        del record

    def flush(self) -> None:
        with contextlib.suppress(OSError):
            super().flush()

    def close(self) -> None:  # Closing the file flushes it once more.
        with contextlib.suppress(OSError):
            super().close()


@contextlib.contextmanager
def diverted_logs(workdir: str, *, verbose: bool = False) -> Iterator[str]:
    """Sends the library loggers to `workdir/train.log` (appending) for the block."""
    path = os.path.join(workdir, LOG_FILE)
    handler = _LogFile(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    handler.setLevel(logging.WARNING)
    loggers = [logging.getLogger(name) for name in (*DIVERTED, _DETAILS.name)]
    previous = [logger.propagate for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.propagate = verbose
    try:
        yield path
    finally:
        for logger, propagate in zip(loggers, previous):
            logger.removeHandler(handler)
            logger.propagate = propagate
        handler.close()


def log_details(error: BaseException) -> None:
    """Writes `error` with its traceback (and causes) to the log file of the current run."""
    _DETAILS.error("%s", error, exc_info=error)
