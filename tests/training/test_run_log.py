"""The run's log file never adds its own failure to a full disk's: writing, flushing and closing
`workdir/train.log` when nothing can be written raise nothing (the trainer reports the disk)."""

from __future__ import annotations

import errno
import io
import logging

from vit_jax.training import run_log


class FullDiskFile(io.StringIO):
    """A text file whose writes land in a buffer and whose flushes fail as on a full disk."""

    def flush(self) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")


def test_log_file_on_a_full_disk_raises_nothing(tmp_path):
    with run_log.diverted_logs(str(tmp_path)) as path:
        handler = next(
            h for h in logging.getLogger("orbax").handlers if isinstance(h, run_log._LogFile)
        )
        handler.stream.close()
        handler.stream = FullDiskFile()
        logging.getLogger("orbax").error("a save failed")  # Emitted, then flushed: fails.
        assert handler.stream.getvalue().endswith("a save failed\n")
    assert handler.stream is None  # Closed despite the failing flush.
    assert path == str(tmp_path / run_log.LOG_FILE)
    assert handler not in logging.getLogger("orbax").handlers
