"""The training subsystem behind `python -m vit_jax.train`.

loop.py         `train_and_evaluate(config, workdir)`: one run, resumed, evaluated, saved
trainer.py      the model, optimizer, shardings and jitted steps of one run (`Trainer`)
step.py         the pure train and eval steps (gradient accumulation, metrics sums)
optim.py        Optax recipes and learning-rate schedules from the config
losses.py       softmax and sigmoid cross-entropy
metrics.py      TensorBoard/metrics.jsonl writers, throughput and the progress line
runtime.py      multi-host start-up and preemption (SIGTERM)
train_state.py  Orbax checkpoints of the train state and the data position
resume.py       restoring the newest intact checkpoint, setting damaged ones aside
divergence.py   the first non-finite or exploded step
workdir_lock.py one trainer per workdir
run_log.py      library logs to workdir/train.log
run_summary.py  the closing lines of a run
"""
