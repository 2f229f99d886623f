r"""Training and fine-tuning: `train_and_evaluate(config, workdir)` and its command line.

    python -m vit_jax.train --config configs/digits.py --workdir workdirs/digits
    python -m vit_jax.train --config configs/finetune.py:l16,cifar100 --workdir ... \
        --config.batch=256 --config.mesh.fsdp=4

A run in a workdir that already holds checkpoints resumes from the latest one, with the same
per-step losses as an uninterrupted run. SIGTERM (preemption) saves a checkpoint and stops.

Multi-host: under SLURM, Open MPI or on a Cloud TPU pod the processes find each other
(`--distributed` forces `jax.distributed.initialize()` elsewhere); otherwise start one process
per host with `--coordinator_address=HOST0:PORT --num_processes=N --process_id=I`.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import sys
from collections.abc import Iterable
from typing import Any

import jax
import ml_collections

from vit_jax import checkpoint, data, fewshot, metrics, runtime, sharding
from vit_jax.checkpoint.train_state import CHECKPOINT_DIR, TrainCheckpointer
from vit_jax.errors import ConfigError, TrainingDivergedError
from vit_jax.trainer import Trainer, evaluate

CONFIG_FILE = "config.json"  # The config of the latest run in the workdir.


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """How a call of `train_and_evaluate` ended."""

    step: int  # Steps done, counting those of earlier (resumed) runs.
    train_losses: dict[int, float]  # Loss of every step run by this call.
    eval_metrics: dict[str, float]  # Last evaluation: test_accuracy, test_loss.
    preempted: bool  # Stopped early by SIGTERM, after saving a checkpoint.
    npz_path: str | None  # The published-layout .npz written at the end (config.save_npz).
    fewshot_metrics: dict[str, float] = dataclasses.field(default_factory=dict)  # Last run.


def check_config(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh) -> None:
    """Raises ConfigError for values that cannot work, before anything heavy starts."""
    for key in ("total_steps", "accum_steps", "batch", "batch_eval", "keep_checkpoints"):
        if not isinstance(config[key], int) or config[key] < 1:
            raise ConfigError(f"config.{key} must be a positive integer, got {config[key]!r}.")
    for key in ("eval_every", "progress_every", "checkpoint_every", "warmup_steps"):
        if not isinstance(config[key], int) or config[key] < 0:
            raise ConfigError(f"config.{key} must be an integer >= 0, got {config[key]!r}.")
    if not isinstance(config.fewshot.every, int) or config.fewshot.every < 0:
        raise ConfigError(f"config.fewshot.every must be >= 0, got {config.fewshot.every!r}.")
    fewshot.Settings.from_config(config.fewshot).check()
    sharding.check_batch("config.batch", config.batch, mesh, config.accum_steps)
    sharding.check_batch("config.batch_eval", config.batch_eval, mesh)


def _every(step: int, period: int, total_steps: int) -> bool:
    """True every `period` steps (never if 0) and at the last step."""
    return step == total_steps or (period > 0 and step % period == 0)


def config_changes(workdir: str, config: ml_collections.ConfigDict) -> list[str]:
    """`key: old -> new` for each value that differs from the workdir's previous run."""
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        old = dict(_flatten(ml_collections.ConfigDict(json.load(f))))
    new = dict(_flatten(ml_collections.ConfigDict(json.loads(config.to_json_best_effort()))))
    return [
        f"{key}: {old.get(key)!r} -> {new.get(key)!r}"
        for key in sorted(set(old) | set(new))
        if old.get(key) != new.get(key)
    ]


def _check_finite(step: int, step_metrics: dict[str, float], checkpoints: TrainCheckpointer):
    bad = {k: v for k, v in step_metrics.items() if not math.isfinite(v)}
    if bad:
        latest = checkpoints.latest_step()
        kept = (
            f"The last good checkpoint (step {latest}) in {checkpoints.directory} is kept"
            if latest is not None
            else "No checkpoint was written before"
        )
        raise TrainingDivergedError(
            f"Training diverged at step {step}: {bad}. {kept}. Lower config.base_lr, raise "
            "config.warmup_steps or set config.grad_norm_clip, then run again."
        )


def print_primary(message: str) -> None:
    """Console messages come from process 0 only."""
    if jax.process_index() == 0:
        print(message, flush=True)


def restore_or_initialize(
    trainer: Trainer, checkpoints: TrainCheckpointer, train_iter: Any, changes: list[str]
) -> Any:
    """The latest checkpoint's state (and data position), else a fresh or pre-trained one."""
    latest = checkpoints.latest_step()
    if latest is None:
        return trainer.initial_state()
    try:
        state = checkpoints.restore(latest, trainer.abstract_state, train_iter)
    except Exception as e:
        changed = f" The config differs from that run's: {'; '.join(changes)}." if changes else ""
        raise ConfigError(
            f"Cannot resume from step {latest} in {checkpoints.directory}: "
            f"{str(e).rstrip('.')}.{changed} Use another --workdir to start afresh, or the "
            "original config to resume."
        ) from e
    print_primary(f"Resuming from step {latest} ({checkpoints.directory}).")
    if changes:
        print_primary(f"Config changes since the last run: {'; '.join(changes)}.")
    return state


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> TrainResult:
    """Trains `config` in `workdir` (resuming from its checkpoints) and evaluates the result.

    Writes TensorBoard events and `metrics.jsonl` to `workdir`, Orbax checkpoints to
    `workdir/checkpoints`, and at the end `workdir/<config.save_npz>` if set.
    """
    mesh = sharding.make_mesh(config.mesh)
    check_config(config, mesh)
    dataset = data.open_dataset(config)  # Once: the trainer and both iterators share it.
    trainer = Trainer(config, mesh, dataset.info)
    train_iter = data.make_train_iterator(config, mesh, sharding.DATA_AXES, dataset=dataset)
    eval_iter = data.make_eval_iterator(config, mesh, sharding.DATA_AXES, dataset=dataset)
    fewshot_eval = fewshot.for_run(config, mesh, trainer)  # None without fewshot.datasets.
    os.makedirs(workdir, exist_ok=True)
    checkpoints = TrainCheckpointer(
        os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR), keep=config.keep_checkpoints
    )
    state = restore_or_initialize(trainer, checkpoints, train_iter, config_changes(workdir, config))
    primary = jax.process_index() == 0
    if primary:
        with open(os.path.join(workdir, CONFIG_FILE), "w") as f:
            f.write(config.to_json_best_effort(indent=2))

    writer = metrics.create_writer(workdir, primary=primary)
    throughput = metrics.Throughput(
        total_steps=config.total_steps, batch=config.batch, num_devices=jax.device_count()
    )
    preemption = runtime.Preemption()
    step = first_step = int(jax.device_get(state.step))
    train_losses: dict[int, float] = {}
    eval_metrics: dict[str, float] = {}
    fewshot_metrics: dict[str, float] = {}
    preempted = False
    pending: tuple[int, dict[str, jax.Array]] | None = None  # Metrics not yet fetched.

    def fetch_pending() -> dict[str, float]:
        """The metrics of the last dispatched step, on the host; stops on NaN or inf."""
        pending_step, device_metrics = pending
        host = {k: float(v) for k, v in jax.device_get(device_metrics).items()}
        _check_finite(pending_step, host, checkpoints)
        train_losses[pending_step] = host["train_loss"]
        return host

    try:
        while step < config.total_steps:
            state, step_metrics = trainer.train_step(state, next(train_iter))
            if pending is not None:
                fetch_pending()  # One step behind, so the devices never wait for the host.
            step += 1
            pending = (step, step_metrics)
            if step == first_step + 1:
                jax.block_until_ready(state)
                throughput.start(step)  # Compilation does not count towards img/s.

            preempted = preemption.reached(step)
            report = _every(step, config.progress_every, config.total_steps)
            run_eval = _every(step, config.eval_every, config.total_steps)
            save = preempted or _every(step, config.checkpoint_every, config.total_steps)
            run_fewshot = fewshot_eval is not None and _every(
                step, config.fewshot.every, config.total_steps
            )
            if not (report or run_eval or save or run_fewshot):
                continue
            host, pending = fetch_pending(), None
            if report:
                scalars = {**host, **throughput.report(step)}
                writer.write_scalars(step, scalars)
                if primary:
                    metrics.print_progress(step, config.total_steps, scalars, throughput.eta(step))
            with throughput.paused():
                if run_eval:
                    eval_metrics = evaluate(trainer.eval_step, state.params, eval_iter)
                    writer.write_scalars(step, eval_metrics)
                    if primary:
                        metrics.print_progress(step, config.total_steps, eval_metrics, math.nan)
                if run_fewshot:
                    fewshot_metrics = fewshot.to_scalars(fewshot_eval.evaluate(state.params))
                    writer.write_scalars(step, fewshot_metrics)
                    if primary:
                        metrics.print_progress(step, config.total_steps, fewshot_metrics, math.nan)
                if save:
                    checkpoints.save(step, state, train_iter)
            if preempted:
                print_primary(
                    f"Preempted: saved step {step} to {checkpoints.directory}; run the same "
                    "command again to resume."
                )
                break
        if pending is not None:
            fetch_pending()
        checkpoints.wait()
        npz_path = None
        if config.save_npz and not preempted:
            npz_path = os.path.join(workdir, config.save_npz)
            params = trainer.host_params(state)  # Gathered on every process.
            if primary:
                checkpoint.save(params, npz_path)
            print_primary(f"Saved the parameters in the published layout to {npz_path}.")
    finally:
        preemption.close()
        checkpoints.close()
        writer.close()
    return TrainResult(step, train_losses, eval_metrics, preempted, npz_path, fewshot_metrics)


# ------------------------------------------------------------------------------------------
# Command line. User errors print one paragraph to stderr and exit with status 2.

USER_ERRORS = (ConfigError, data.DataError, checkpoint.CheckpointError)


def _define_flags(flag_values: Any, argv: list[str]) -> Any:
    """The command-line flags, in their own FlagValues (so `main` can run more than once)."""
    from absl import flags
    from ml_collections import config_flags

    config = config_flags.DEFINE_config_file(
        "config",
        None,
        "Config file, e.g. configs/digits.py or configs/finetune.py:b16,cifar10.",
        flag_values=flag_values,
        sys_argv=argv,  # Where the --config.key=value overrides are looked for.
    )
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
    flags.mark_flags_as_required(["config", "workdir"], flag_values=flag_values)
    return config


def _config_key_error(argv: list[str]) -> str | None:
    """Names the first `--config.a.b=...` override whose key the config does not have."""
    from absl import flags

    plain = [arg for arg in argv if not arg.startswith("--config.")]
    try:  # Load the config without the overrides, to look the keys up.
        flag_values = flags.FlagValues()
        config = _define_flags(flag_values, plain)
        flag_values(plain)
        known = [path for path, _ in _flatten(config.value)]
    except Exception:
        return None
    for arg in argv[1:]:
        if not arg.startswith("--config."):
            continue
        path = arg[len("--config.") :].split("=", 1)[0]
        if path not in known and not any(k.startswith(path + ".") for k in known):
            close = difflib.get_close_matches(path, known, n=1, cutoff=0.6)
            hint = f" Did you mean {close[0]}?" if close else ""
            return (
                f"Unknown config key {path!r} in {arg}.{hint} Every key is defined, with a "
                "comment, in configs/base.py."
            )
    return None


def _flatten(config: Any, prefix: str = "") -> Iterable[tuple[str, Any]]:
    for key, value in config.items():
        if isinstance(value, ml_collections.ConfigDict):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _last_line(error: Exception) -> str:
    """The gist of a flag error: config-file errors arrive with their traceback as text."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if len(lines) <= 1:
        return f"{type(error).__name__}: {error}"
    return f"cannot load the config: {lines[-1]}"


def main(argv: list[str] | None = None) -> int:
    """Parses the command line, joins a multi-host job if any, trains; returns the exit code."""
    from absl import flags

    from vit_jax import config_files, quiet, run_summary  # The command line's own helpers.

    quiet.for_command_line()
    # A config given by name or as configs/NAME.py also works outside a checkout (the wheel).
    argv = config_files.resolve_argv(sys.argv if argv is None else argv)
    flag_values = flags.FlagValues()
    config_flag = _define_flags(flag_values, argv)
    if {"-h", "--help"} & set(argv[1:]):
        print(f"{__doc__}\nFlags:\n{flag_values.get_help()}")
        return 0
    try:
        flag_values(argv)
        config = config_flag.value
        config.keys()  # A config file that failed to load raises here.
    except Exception as e:  # Whatever the flag or config-file problem, report it plainly.
        message = _config_key_error(argv) or _last_line(e)
        print(f"Error: {message}\nUsage: python -m vit_jax.train --config=configs/digits.py "
              "--workdir=DIR [--config.KEY=VALUE ...]", file=sys.stderr)  # fmt: skip
        return 2
    try:
        runtime.initialize_distributed(
            coordinator_address=flag_values.coordinator_address,
            num_processes=flag_values.num_processes,
            process_id=flag_values.process_id,
            force=flag_values.distributed,
        )
        result = train_and_evaluate(config, flag_values.workdir)
    except USER_ERRORS as e:
        print(f"Error: {e}", file=sys.stderr)
        return 2
    except TrainingDivergedError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
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
