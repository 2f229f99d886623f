r"""Training and fine-tuning: the command line of `training.loop.train_and_evaluate`.

    python -m vit_jax.train --config configs/digits.py --workdir workdirs/digits
    python -m vit_jax.train --config configs/finetune.py:l16,cifar100 --workdir ... \
        --config.batch=256 --config.mesh.fsdp=4

A run in a workdir that already holds checkpoints resumes from the newest intact one (damaged
ones are reported and moved to `checkpoints.damaged/`), with the same per-step losses as an
uninterrupted run. SIGTERM (preemption) saves a checkpoint and stops. One trainer at a time
per workdir (`workdir/LOCK`); library diagnostics go to `workdir/train.log` (`--verbose` also
prints them).

Multi-host: under SLURM, Open MPI or on a Cloud TPU pod the processes find each other
(`--distributed` forces `jax.distributed.initialize()` elsewhere); otherwise start one process
per host with `--coordinator_address=HOST0:PORT --num_processes=N --process_id=I`.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Any

if __name__ == "__main__":  # First: huge pages for XLA:CPU's buffers (cli/huge_pages.py).
    from vit_jax.cli import huge_pages

    huge_pages.reexec_with_huge_pages("vit_jax.train")

from vit_jax import checkpoint, data, errors
from vit_jax.cli import config_flag
from vit_jax.errors import ConfigError, TrainingDivergedError, WorkdirError
from vit_jax.training import run_log, runtime
from vit_jax.training.loop import train_and_evaluate
from vit_jax.training.runtime import print_primary

# User errors print one paragraph to stderr and exit with status 2.
USER_ERRORS = (ConfigError, data.DataError, checkpoint.CheckpointError, WorkdirError)


def _define_flags(flag_values: Any, argv: list[str]) -> Any:
    """The command-line flags, in their own FlagValues (so `main` can run more than once)."""
    from absl import flags

    config = config_flag.define_config_flag(flag_values, argv)
    define = dict(flag_values=flag_values)
    flags.DEFINE_string("workdir", None, "Checkpoints, metrics and the final .npz.", **define)
    flags.DEFINE_string(
        "coordinator_address", None, "Multi-host without a launcher: host:port of rank 0.", **define
    )
    flags.DEFINE_integer("num_processes", None, "Multi-host: number of processes.", **define)
    flags.DEFINE_integer("process_id", None, "Multi-host: index of this process.", **define)
    flags.DEFINE_bool(
        "distributed", False, "Call jax.distributed.initialize() without a launcher.", **define
    )
    flags.DEFINE_bool(
        "verbose", False, "Also print library logs (Orbax, asyncio) and tracebacks.", **define
    )
    flags.mark_flags_as_required(["config", "workdir"], flag_values=flag_values)
    return config


def _report(error: Exception, workdir: str, verbose: bool) -> None:
    """One paragraph on stderr; the traceback in workdir/train.log (and stderr if verbose)."""
    log = os.path.join(workdir, run_log.LOG_FILE)
    where = ""
    if os.path.isdir(workdir) and not isinstance(error, WorkdirError):
        with run_log.diverted_logs(workdir):
            run_log.log_details(error)
        where = f" (Details: {log}.)"
    if verbose:
        traceback.print_exception(error, file=sys.stderr)
    errors.report(f"{error}{where}")


def main(argv: list[str] | None = None) -> int:
    """Parses the command line, joins a multi-host job if any, trains; returns the exit code."""
    from vit_jax.cli import quiet  # The command line's own helpers.
    from vit_jax.training import run_summary

    quiet.for_command_line()
    argv = list(sys.argv if argv is None else argv)
    usage = (
        "Usage: python -m vit_jax.train --config=configs/digits.py --workdir=DIR "
        "[--config.KEY=VALUE ...]"
    )
    parsed = config_flag.parse_command_line(argv, _define_flags, __doc__, usage)
    if isinstance(parsed, int):
        return parsed
    config, flag_values = parsed
    try:
        runtime.initialize_distributed(
            coordinator_address=flag_values.coordinator_address,
            num_processes=flag_values.num_processes,
            process_id=flag_values.process_id,
            force=flag_values.distributed,
        )
        result = train_and_evaluate(config, flag_values.workdir, verbose=flag_values.verbose)
    except (*USER_ERRORS, TrainingDivergedError) as e:
        _report(e, flag_values.workdir, flag_values.verbose)
        return 1 if isinstance(e, TrainingDivergedError) else 2
    if not result.preempted:
        print_primary(
            run_summary.summary(
                workdir=flag_values.workdir,
                step=result.step,
                total_steps=config.total_steps,
                trained=bool(result.train_losses),
                eval_metrics=result.eval_metrics,
                npz_path=result.npz_path,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
