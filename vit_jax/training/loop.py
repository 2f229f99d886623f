"""`train_and_evaluate(config, workdir)`: one training run, what `python -m vit_jax.train` runs.

A run in a workdir that already holds checkpoints resumes from the newest intact one (damaged
ones are reported and moved to `checkpoints.damaged/`), with the same per-step losses as an
uninterrupted run. SIGTERM (preemption) saves a checkpoint and stops. One trainer at a time
per workdir (`workdir/LOCK`); library diagnostics go to `workdir/train.log` (also to the
console with `verbose`). The jitted steps and shardings are the `Trainer`'s
(`vit_jax.training.trainer`); this module drives them: data, evaluation, few-shot,
checkpoints, metrics and divergence.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
from typing import Any

import jax
import ml_collections

from vit_jax import checkpoint, data, fewshot, sharding
from vit_jax.checkpoint import fs
from vit_jax.cli.config_flag import flatten
from vit_jax.errors import ConfigError, TrainingDivergedError, WorkdirError
from vit_jax.training import divergence, metrics, resume, run_log, runtime
from vit_jax.training.runtime import print_primary
from vit_jax.training.train_state import CHECKPOINT_DIR, CheckpointMismatch, TrainCheckpointer
from vit_jax.training.trainer import Trainer, evaluate
from vit_jax.training.workdir_lock import WorkdirLock

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
        if key == "accum_steps" and config[key] is None:
            continue  # The trainer chooses (models/backend_tuning.py).
        if not isinstance(config[key], int) or config[key] < 1:
            raise ConfigError(f"config.{key} must be a positive integer, got {config[key]!r}.")
    for key in ("eval_every", "progress_every", "checkpoint_every", "warmup_steps"):
        if not isinstance(config[key], int) or config[key] < 0:
            raise ConfigError(f"config.{key} must be an integer >= 0, got {config[key]!r}.")
    if not isinstance(config.fewshot.every, int) or config.fewshot.every < 0:
        raise ConfigError(f"config.fewshot.every must be >= 0, got {config.fewshot.every!r}.")
    fewshot.Settings.from_config(config.fewshot).check()
    sharding.check_batch("config.batch", config.batch, mesh, config.accum_steps or 1)
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
        old = dict(flatten(ml_collections.ConfigDict(json.load(f))))
    new_config = ml_collections.ConfigDict(json.loads(config.to_json_best_effort()))
    new = dict(flatten(new_config))
    return [
        f"{key}: {old.get(key)!r} -> {new.get(key)!r}"
        for key in sorted(set(old) | set(new))
        if old.get(key) != new.get(key)
    ]


def _diverged(step: int, problem: str, checkpoints: TrainCheckpointer) -> TrainingDivergedError:
    """The error for a run whose first bad step is `step`; sets aside the checkpoints saved
    from the last state that produced it (see `divergence`)."""
    with contextlib.suppress(WorkdirError):  # A failing save matters less than the divergence.
        checkpoints.wait()
    saved = checkpoints.all_steps()
    good = divergence.last_good_step(step, saved)
    bad = [s for s in saved if good is None or s > good]
    moved = [resume.set_aside(checkpoints, s) for s in bad]
    kept = (
        f"The last good checkpoint (step {good}) in {checkpoints.directory} is kept, and a "
        "rerun resumes from it"
        if good is not None
        else "No checkpoint was saved before it, so a rerun starts afresh"
    )
    aside = (
        f" The {'checkpoints of steps' if len(bad) > 1 else 'checkpoint of step'} "
        f"{', '.join(map(str, bad))} already held the state that produced it; moved to "
        f"{os.path.dirname(moved[0])}."
        if bad
        else ""
    )
    return TrainingDivergedError(
        f"Training diverged {problem}.{aside} {kept}. Lower config.base_lr, raise "
        "config.warmup_steps or set config.grad_norm_clip, then run again."
    )


def restore_or_initialize(
    trainer: Trainer, checkpoints: TrainCheckpointer, train_iter: Any, changes: list[str]
) -> Any:
    """The newest intact checkpoint's state (and data position), else a fresh or pre-trained
    one. Damaged checkpoints are reported and set aside (see `checkpoint.resume`)."""
    try:
        restored = resume.restore_newest_intact(
            checkpoints, trainer.abstract_state, train_iter, report=print_primary
        )
    except CheckpointMismatch as e:
        fix = (
            f"The config differs from that run's: {'; '.join(changes)}. Use the original "
            "config to resume, or another --workdir to start afresh."
            if changes
            else "The config is the one that run recorded, so the model or optimizer code "
            "changed since. Use another --workdir to start afresh."
        )
        raise ConfigError(f"Cannot resume in {checkpoints.directory}: {e}. {fix}") from e
    if restored is None:
        return trainer.initial_state()
    latest, state = restored
    print_primary(f"Resuming from step {latest} ({checkpoints.directory}).")
    if changes:
        print_primary(f"Config changes since the last run: {'; '.join(changes)}.")
    return state


def check_paths(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Remote paths whose storage cannot be reached fail here, in seconds (see fs)."""
    fs.check_reachable(workdir, "--workdir")
    for key in ("pretrained_dir", "tfds_data_dir"):
        if config.get(key):
            fs.check_reachable(config[key], f"config.{key}")


def train_and_evaluate(
    config: ml_collections.ConfigDict, workdir: str, *, verbose: bool = False
) -> TrainResult:
    """Trains `config` in `workdir` (resuming from its checkpoints) and evaluates the result.

    Writes TensorBoard events and `metrics.jsonl` to `workdir`, Orbax checkpoints to
    `workdir/checkpoints`, and at the end `workdir/<config.save_npz>` if set. Holds
    `workdir/LOCK` throughout; library logs go to `workdir/train.log` (also to the console
    if `verbose`).
    """
    mesh = sharding.make_mesh(config.mesh)
    check_config(config, mesh)
    check_paths(config, workdir)
    os.makedirs(workdir, exist_ok=True)
    with contextlib.ExitStack() as stack:
        if jax.process_index() == 0 and fs.is_local(workdir):
            lock = stack.enter_context(WorkdirLock(workdir))
            if lock.previous:
                print_primary(
                    f"Took over {lock.path} from a run that is gone "
                    f"({', '.join(f'{k} {v}' for k, v in lock.previous.items())})."
                )
        elif jax.process_index() == 0:
            print_primary(f"Note: {workdir} is remote and cannot be locked; run one trainer.")
        stack.enter_context(run_log.diverted_logs(workdir, verbose=verbose))
        return _train(config, workdir, mesh)


def _train(config: ml_collections.ConfigDict, workdir: str, mesh: jax.sharding.Mesh) -> TrainResult:
    """The body of `train_and_evaluate`, holding the workdir."""
    dataset = data.open_dataset(config)  # Once: the trainer and both iterators share it.
    trainer = Trainer(config, mesh, dataset.info)
    if config.accum_steps is None and trainer.accum_steps > 1:
        images = config.batch // sharding.num_data_shards(mesh) // trainer.accum_steps
        print_primary(
            f"Each step runs {trainer.accum_steps} micro-batches of {images} images per device "
            "(config.accum_steps unset: sized for the CPU's caches, see "
            "vit_jax/models/backend_tuning.py)."
        )
    train_iter = data.make_train_iterator(config, mesh, sharding.DATA_AXES, dataset=dataset)
    eval_iter = data.make_eval_iterator(config, mesh, sharding.DATA_AXES, dataset=dataset)
    fewshot_eval = fewshot.for_run(config, mesh, trainer)  # None without fewshot.datasets.
    checkpoints = TrainCheckpointer(
        os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR), keep=config.keep_checkpoints
    )
    # The config as run: an unset accum_steps as the trainer resolved it, so that a resume
    # that splits the batches differently (another backend or mesh) is listed as a change.
    as_run = config.copy_and_resolve_references()
    as_run.accum_steps = trainer.accum_steps
    state = restore_or_initialize(trainer, checkpoints, train_iter, config_changes(workdir, as_run))
    primary = jax.process_index() == 0
    if primary:
        with open(os.path.join(workdir, CONFIG_FILE), "w") as f:
            f.write(as_run.to_json_best_effort(indent=2))

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
    monitor = divergence.DivergenceMonitor()
    # Multi-process: a save failure is raised at the next save, when Orbax syncs every
    # process, so that no process stops alone while the others wait in a collective.
    poll_saves = jax.process_count() == 1

    def fetch_pending() -> dict[str, float]:
        """The metrics of the last dispatched step, on the host; stops on divergence."""
        pending_step, device_metrics = pending
        host = {k: float(v) for k, v in jax.device_get(device_metrics).items()}
        problem = monitor.check(pending_step, host)
        if problem:
            raise _diverged(pending_step, problem, checkpoints)
        train_losses[pending_step] = host["train_loss"]
        return host

    try:
        while step < config.total_steps:
            state, step_metrics = trainer.train_step(state, next(train_iter))
            if pending is not None:
                fetch_pending()  # One step behind, so the devices never wait for the host.
            if poll_saves:
                checkpoints.poll_save()  # A failed save stops the run at the next step.
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
