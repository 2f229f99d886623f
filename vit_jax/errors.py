"""The one base of user-facing errors, and the one way command lines report them.

Every error a user can fix (a config value, a dataset, a checkpoint file, an image, a
workdir) derives from `VitJaxError` and says what went wrong and what to do about it. The
command lines print it with `report` as one paragraph, `Error: <message>`, and exit with
`USER_ERROR_EXIT` (2, as argparse does for bad arguments); tracebacks are for bugs.
Each subclass also keeps the builtin base it always had (ValueError, RuntimeError), so
existing `except ValueError` code still catches it.
"""

from __future__ import annotations

import sys

USER_ERROR_EXIT = 2


class VitJaxError(Exception):
    """Something the user can fix; the message says what and how."""


def report(error: BaseException | str) -> int:
    """Prints `Error: <message>` on stderr; returns USER_ERROR_EXIT for `main` to return."""
    print(f"Error: {error}", file=sys.stderr)
    return USER_ERROR_EXIT


class ConfigError(VitJaxError, ValueError):
    """A config value that cannot work (unknown name, bad size, missing setting)."""


class TrainingDivergedError(VitJaxError, RuntimeError):
    """The loss or the gradient became NaN or infinite; earlier checkpoints are kept."""


class WorkdirError(VitJaxError, RuntimeError):
    """The workdir cannot be used as it is: held by another trainer, out of space, or every
    checkpoint in it damaged. The message names the path, what is wrong and what to do."""
