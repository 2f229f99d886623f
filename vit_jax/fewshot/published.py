"""Few-shot accuracy of a checkpoint file: `evaluate_checkpoint(path, datasets)`.

The architecture, head and resolution come from the parameter shapes
(`vit_jax.checkpoint.infer_*`), so any published `.npz` (local, gs://, https://) works, as
does one written by `train_and_evaluate`. Parameters are placed on a data-parallel mesh over
all devices and the features come from the same sharded forward as in training.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from vit_jax import checkpoint, data, sharding
from vit_jax.fewshot.evaluator import FewShotEvaluator, Settings
from vit_jax.fewshot.report import Results


def evaluate_checkpoint(
    path: str,
    datasets: Sequence[str],
    *,
    shots: Sequence[int] = (1, 5, 10, 25),
    seeds: int = 3,
    holdout: int = 5,
    batch: int = 256,
    dtype: str = "float32",
    tfds_data_dir: str | None = None,
) -> Results:
    """`{dataset: {shots: accuracy}}` for the checkpoint at `path`; see `FewShotEvaluator`.

    `batch` images go through the model at once (rounded to whole per-device batches);
    `dtype` is the compute dtype ('bfloat16' is faster on accelerators).
    """
    params = checkpoint.load(path)
    try:
        config = checkpoint.infer_config(params)
        height, width = checkpoint.infer_image_size(params, config)
    except ValueError as e:
        raise checkpoint.CheckpointError(f"{path} is not a ViT checkpoint: {e}") from None
    if height != width:
        raise checkpoint.CheckpointError(
            f"{path} was trained on {height}x{width} images; the few-shot pipeline reads "
            "square images only."
        )
    num_classes = checkpoint.infer_num_classes(params)
    model = checkpoint.build_checked(
        params, config, num_classes, (height, width), source=path, dtype=jnp.dtype(dtype)
    )

    mesh = sharding.make_mesh({"data": -1, "fsdp": 1})
    shards = sharding.num_data_shards(mesh)
    data_config = data.default_config()
    data_config.tfds_data_dir = tfds_data_dir
    data_config.batch_eval = max(batch // shards, 1) * shards  # Whole per-device batches.
    param_shardings = sharding.fsdp_shardings(params, mesh)
    params = jax.device_put(params, param_shardings)
    settings = Settings(tuple(datasets), tuple(shots), seeds, holdout)
    evaluator = FewShotEvaluator(settings, data_config, mesh, model, param_shardings, height)
    return evaluator.evaluate(params)
