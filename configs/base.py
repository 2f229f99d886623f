"""The locked base config: every key of a training run, defined once, with its meaning.

Key names follow google-research/vision_transformer, so its commands carry over. Experiment
configs start from `get_config()` and change values; the config is locked, so a misspelt key
(in a file or as `--config.key=value`) is an error instead of being silently ignored.
Defaults are the paper's fine-tuning recipe for ViT-B/16 on CIFAR-10 at 384 px.
"""

from __future__ import annotations

import ml_collections

from vit_jax import data, models

# Model fields beyond the published model configs, with the values the published models use.
MODEL_EXTRAS = {
    "head_bias_init": 0.0,  # Initial bias of the (zero-initialised) classification head.
    "dtype": "bfloat16",  # Compute dtype ('bfloat16' or 'float32'); parameters stay float32.
    "stoch_depth": 0.0,  # Drop-path rate of the last encoder block (0 at the first).
    "remat": False,  # Recompute each block's activations in the backward pass (saves memory).
    "scan_layers": False,  # One compiled block under nn.scan (fast compiles for deep models).
    # Attention core: 'auto' (an explicit softmax on CPU, cuDNN's flash attention on NVIDIA
    # GPUs that run it, XLA's dot_product_attention elsewhere; models/backend_tuning.py), 'xla',
    # 'cudnn' (flash attention; NVIDIA GPUs, bfloat16/float16), 'explicit'.
    "attention_implementation": "auto",
    # What a bfloat16/float16 model's weight matmuls return: 'float32' (kept until the bias and
    # GELU), 'compute' (the compute dtype, as torch's autocast), 'auto' ('compute' on GPUs,
    # 'float32' elsewhere; models/backend_tuning.py). Float32 models are the same either way.
    "matmul_outputs": "auto",
    # Who runs the dense layers' matmuls and the explicit attention's products: 'xla', 'onednn'
    # (oneDNN's custom call; CPU only, the `onednn` extra), 'openblas' or 'mkl' (OpenBLAS's or
    # MKL's; CPU and float32 only, the `openblas` or `mkl` extra), or 'auto': oneDNN for bfloat16
    # on a CPU with AMX, MKL (else OpenBLAS) for float32 on an Intel CPU with AVX-512, where the
    # extra is installed (measured faster there), else XLA (models/backend_tuning.py, item 5).
    "matmul_library": "auto",
}


def model_config(name: str, **overrides) -> ml_collections.ConfigDict:
    """The fields of `VisionTransformer` for a published model (`models.get_config(name)`)."""
    config = models.get_config(name)
    config.update(MODEL_EXTRAS)
    config.update(overrides)
    if (
        config.representation_size is None
    ):  # Typed, so --config.model.representation_size=768 works.
        config.representation_size = ml_collections.config_dict.placeholder(int)
    return config


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()

    # Model and initialisation.
    config.model = model_config("ViT-B_16")  # VisionTransformer fields; classes come from data.
    config.pretrained_dir = "gs://vit_models/imagenet21k"  # Has <model_name>.npz; '' = scratch.
    config.save_npz = ""  # File in the workdir for the final params (published layout); ''=none.

    # Data and the run's seed: dataset, batch sizes, prefetch, seed, pp.* (splits, crop, ops,
    # augmentation). Each key is defined once, with its meaning, in vit_jax/data/config.py.
    config.update(data.default_config())  # Keeps the typed placeholders (tfds_data_dir).

    # Optimisation.
    config.total_steps = 10_000  # Training steps (optimizer updates).
    config.loss = "softmax_xent"  # 'softmax_xent' or 'sigmoid_xent' (pre-training).
    config.optimizer = "sgd"  # 'sgd' (with momentum), 'adam' or 'adamw'.
    config.momentum = 0.9  # SGD momentum.
    config.adam_b1 = 0.9  # Adam/AdamW first-moment decay.
    config.adam_b2 = 0.999  # Adam/AdamW second-moment decay.
    config.weight_decay = 0.0  # L2 for sgd/adam, decoupled (times lr) for adamw; kernels only.
    config.optim_dtype = "bfloat16"  # dtype of the momentum / first moment.
    config.grad_norm_clip = 1.0  # Clip gradients to this global norm; 0 = no clipping.
    # Split each batch into this many sequential micro-batches (gradients accumulated). Unset:
    # the trainer's choice, vit_jax/models/backend_tuning.py (CPU: micro-batches whose
    # activations fit the caches; TPU, GPU: 1).
    config.accum_steps = ml_collections.config_dict.placeholder(int)  # None: the trainer's.
    config.base_lr = 0.03  # Peak learning rate.
    config.final_lr = 0.0  # Learning rate reached at total_steps.
    config.decay_type = "cosine"  # After warmup: 'cosine', 'linear' or 'constant'.
    config.warmup_steps = 500  # Linear warmup from 0 to base_lr.

    # Few-shot linear evaluation of the frozen features (vit_jax.fewshot; paper Section 4.1).
    config.fewshot = ml_collections.ConfigDict()  # Off while `datasets` is empty.
    config.fewshot.datasets = ()  # Presets (vit_jax.fewshot.PRESETS), TFDS names or folders.
    config.fewshot.shots = (1, 5, 10, 25)  # Training examples per class of each linear fit.
    config.fewshot.seeds = 3  # Random draws of those examples; accuracies are averaged.
    config.fewshot.holdout = 5  # Further examples per class that pick the ridge strength.
    config.fewshot.every = 0  # Evaluate every so many steps (and at the end); 0 = end only.

    # Devices.
    config.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1})  # Axis sizes; -1 = rest.

    # Bookkeeping.
    config.progress_every = 10  # Log training metrics every so many steps.
    config.eval_every = 100  # Evaluate on the test split every so many steps (and at the end).
    config.checkpoint_every = 1_000  # Save a checkpoint every so many steps (and at the end).
    config.keep_checkpoints = 3  # Checkpoints kept in workdir/checkpoints.

    return config.lock()
