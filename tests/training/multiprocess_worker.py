"""One process of a multi-process run on localhost CPUs, for test_multiprocess.py.

    python tests/training/multiprocess_worker.py PROCESS_ID NUM_PROCESSES PORT WORKDIR OUT_JSON

Trains the tiny synthetic config over all processes' devices (4 each, set by the parent
through XLA_FLAGS) with gloo collectives, and process 0 writes the per-step losses.
"""

from __future__ import annotations

import json
import sys

import jax


def main(process_id: int, num_processes: int, port: int, workdir: str, out: str) -> None:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    from vit_jax.training import runtime

    runtime.initialize_distributed(
        coordinator_address=f"127.0.0.1:{port}",
        num_processes=num_processes,
        process_id=process_id,
    )
    from tests.training import synthetic
    from vit_jax.training import loop

    loop.data = synthetic.SyntheticData()
    result = loop.train_and_evaluate(synthetic.multiprocess_config(), workdir)
    if jax.process_index() == 0:
        with open(out, "w") as f:
            json.dump(
                {
                    "process_count": jax.process_count(),
                    "device_count": jax.device_count(),
                    "losses": result.train_losses,
                    "eval": result.eval_metrics,
                },
                f,
            )


if __name__ == "__main__":
    process_id, num_processes, port, workdir, out = sys.argv[1:]
    main(int(process_id), int(num_processes), int(port), workdir, out)
