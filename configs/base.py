"""The locked base config: every key of a training run, defined once, with its meaning.

Key names follow google-research/vision_transformer, so its commands carry over. Experiment
configs start from `get_config()` and change values; the config is locked, so a misspelt key
(in a file or as `--config.key=value`) is an error instead of being silently ignored.
Defaults are the paper's fine-tuning recipe for ViT-B/16 on CIFAR-10 at 384 px.
"""

from __future__ import annotations

import ml_collections

from vit_jax import models

# Model fields beyond the published model configs, with the values the published models use.
MODEL_EXTRAS = {
    "head_bias_init": 0.0,  # Initial bias of the (zero-initialised) classification head.
    "dtype": "bfloat16",  # Compute dtype ('bfloat16' or 'float32'); parameters stay float32.
    "stoch_depth": 0.0,  # Drop-path rate of the last encoder block (0 at the first).
    "remat": False,  # Recompute each block's activations in the backward pass (saves memory).
    "scan_layers": False,  # One compiled block under nn.scan (fast compiles for deep models).
    # Attention core: 'auto' (XLA's dot_product_attention on accelerators, an explicit softmax
    # on CPU), 'xla', 'cudnn' (flash attention; NVIDIA GPUs, bfloat16/float16), 'explicit'.
    "attention_implementation": "auto",
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
    config.seed = 0  # Initialisation, dropout and data order.
    config.save_npz = ""  # File in the workdir for the final params (published layout); ''=none.

    # Data (read by vit_jax.data; see its docstring).
    config.dataset = "cifar10"  # TFDS name, image-folder path, or 'digits' (offline).
    config.tfds_data_dir = ml_collections.config_dict.placeholder(str)  # None = TFDS default.
    config.tfds_manual_dir = ml_collections.config_dict.placeholder(str)  # Manual downloads.
    config.batch = 512  # Global training batch, over all devices and accum_steps.
    config.batch_eval = 512  # Global evaluation batch.
    config.shuffle_buffer = 50_000  # Training examples shuffled at once.
    config.prefetch = 2  # Batches prepared ahead on the devices.
    config.pp = ml_collections.ConfigDict()  # Preprocessing.
    config.pp.train = ""  # Training split; '' = the dataset's preset (e.g. 'train[:98%]').
    config.pp.test = ""  # Evaluation split; '' = the dataset's preset.
    config.pp.crop = 0  # Image size fed to the model; 0 = the dataset's preset (384).
    config.pp.train_ops = ""  # Custom training ops 'decode|...'; '' = inception crop + flip.
    config.pp.test_ops = ""  # Custom evaluation ops; '' = resize to crop.
    config.pp.aug = "none"  # AugReg RandAugment+mixup recipe: none, light1 ... strong2.
    config.pp.mixup_alpha = 0.0  # Mixup alpha; > 0 overrides the recipe's.
    config.pp.label_smoothing = 0.0  # Label smoothing of the training targets.
    config.pp.multi_label = False  # k-hot targets, for datasets with several labels per image.
    config.pp.central_crop = False  # Evaluate on a central crop (ImageNet style), not a resize.

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
    config.accum_steps = 1  # Split each batch into this many sequential micro-batches.
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
