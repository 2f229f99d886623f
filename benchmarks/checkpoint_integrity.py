"""What the checkpoint checksums cost: ViT-B/16 train state saved and restored with them, as a
ratio to the same save and restore by plain Orbax.

    python -m benchmarks.checkpoint_integrity [--model B/16] [--optimizer adam] [--json]

The state is the trainer's own (parameters, optimizer moments, step, RNG) with random
parameters. "plain" is the same Orbax CheckpointManager, options and items (state and data
position) as `TrainCheckpointer` but without the checks, i.e. the trainer's checkpointing before
them; "checked" is `TrainCheckpointer` (array checksums computed on the devices at save and
after the restore, file manifests written at save and verified before the restore). Each is
timed to completion (the asynchronous save waited for), best of `--repeats`, in a fresh
directory.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time

import jax
import orbax.checkpoint as ocp

from benchmarks import common
from configs import finetune
from vit_jax import data, sharding
from vit_jax.checkpoint import integrity
from vit_jax.training.train_state import (
    DataIteratorHandler,
    DataIteratorRestore,
    DataIteratorSave,
    TrainCheckpointer,
)
from vit_jax.training.trainer import Trainer


class _Position:
    """A data position of one small file, like the real iterator's."""

    def save(self, path: str) -> None:
        with open(f"{path}.json", "w") as f:
            f.write('{"position": 1}')

    def restore(self, path: str) -> None:
        with open(f"{path}.json") as f:
            f.read()


def _best_alternating(fns: list, repeats: int) -> list[float]:
    """The best time of each function, calling them in turn so that a noisy moment on a
    shared machine hits all of them alike."""
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - start)
    return best


def measure(trainer: Trainer, state, root: str, repeats: int) -> dict[str, float]:
    abstract = trainer.abstract_state
    counter = iter(range(10**6))

    def plain_manager(path: str) -> ocp.CheckpointManager:
        return ocp.CheckpointManager(
            path,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=1, enable_async_checkpointing=True, create=True
            ),
            item_handlers={"state": ocp.StandardCheckpointHandler(), "data": DataIteratorHandler()},
        )

    def plain_save() -> str:
        path = os.path.join(root, f"plain{next(counter)}")
        manager = plain_manager(path)
        manager.save(
            1,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), data=DataIteratorSave(_Position())
            ),
        )
        manager.wait_until_finished()
        manager.close()
        return path

    def checked_save() -> str:
        path = os.path.join(root, f"checked{next(counter)}")
        checkpoints = TrainCheckpointer(path, keep=1)
        checkpoints.save(1, state, _Position())
        checkpoints.wait()
        checkpoints.close()
        return path

    plain_dir, checked_dir = plain_save(), checked_save()  # Warm-up (compiles the checksums).

    def plain_restore():
        manager = plain_manager(plain_dir)
        restored = manager.restore(
            1,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), data=DataIteratorRestore(_Position())
            ),
        )
        jax.block_until_ready(restored["state"])
        manager.close()

    def checked_restore():
        checkpoints = TrainCheckpointer(checked_dir, keep=1)
        jax.block_until_ready(checkpoints.restore(1, abstract, _Position()))
        checkpoints.close()

    plain_save_s, checked_save_s = _best_alternating([plain_save, checked_save], repeats)
    plain_restore_s, checked_restore_s = _best_alternating(
        [plain_restore, checked_restore], repeats
    )
    (checksums_s,) = _best_alternating([lambda: integrity.array_checksums(state)], repeats)
    results = {
        "plain_save_s": plain_save_s,
        "checked_save_s": checked_save_s,
        "plain_restore_s": plain_restore_s,
        "checked_restore_s": checked_restore_s,
        "array_checksums_s": checksums_s,
        "state_bytes": sum(x.nbytes for x in jax.tree.leaves(state)),
    }
    results["save_ratio"] = results["checked_save_s"] / results["plain_save_s"]
    results["restore_ratio"] = results["checked_restore_s"] / results["plain_restore_s"]
    return results


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="b16", help="finetune config name, e.g. b16, l16")
    parser.add_argument("--optimizer", default="adam", choices=["sgd", "adam", "adamw"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dir", default=None, help="where to write (default: a temp dir)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    config = finetune.get_config(f"{args.model},cifar10")
    config.update(pretrained_dir="", optimizer=args.optimizer)
    mesh = sharding.make_mesh(config.mesh)
    info = data.DatasetInfo(
        name="bench",
        num_classes=1000,
        num_train_examples=1_000_000,
        num_eval_examples=50_000,
        image_size=224,
        channels=3,
        label_names=None,
    )
    trainer = Trainer(config, mesh, info)
    state = trainer.initial_state()
    root = tempfile.mkdtemp(dir=args.dir)
    try:
        results = measure(trainer, state, root, args.repeats)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    row = {"model": args.model, "optimizer": args.optimizer, **results, **common.environment()}
    if args.json:
        print(json.dumps(row))
        return
    print(
        f"{args.model} + {args.optimizer}: {row['state_bytes'] / 2**30:.2f} GiB of state\n"
        f"save    plain {row['plain_save_s']:.2f} s, checked {row['checked_save_s']:.2f} s: "
        f"{row['save_ratio']:.2f}x\n"
        f"restore plain {row['plain_restore_s']:.2f} s, checked {row['checked_restore_s']:.2f} s: "
        f"{row['restore_ratio']:.2f}x\n"
        f"array checksums alone {row['array_checksums_s']:.2f} s"
    )


if __name__ == "__main__":
    main()
