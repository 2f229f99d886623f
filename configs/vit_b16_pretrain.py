r"""Pre-trains ViT-B/16 on ImageNet-21k with the paper's recipe (Section 4.1, Appendix B.1).

    python -m vit_jax.train --config configs/vit_b16_pretrain.py --workdir workdirs/b16_i21k \
        --config.tfds_manual_dir=/data/imagenet21k

Adam (b1 0.9, b2 0.999) with decoupled weight decay 0.1, batch 4096, learning rate 1e-3 with
10k linear warmup steps then linear decay, sigmoid cross-entropy, dropout 0.1, a 768-wide
tanh pre-logits layer and head bias -10, 90 epochs at 224 px. The paper's JFT-300M runs use
the same recipe on a dataset that is not public. Another model with the same recipe (its
pre-logits as wide as the model): `configs/vit_b16_pretrain.py:ViT-L_16`.
"""

from __future__ import annotations

import ml_collections

from configs import base

EPOCHS = 90
TRAIN_IMAGES = 14_197_122 - 51_200  # ImageNet-21k minus the held-out minival.


def get_config(model: str = "ViT-B_16") -> ml_collections.ConfigDict:
    config = base.get_config()
    width = base.model_config(model).hidden_size
    config.model = base.model_config(model, representation_size=width, head_bias_init=-10.0)
    config.model.transformer.dropout_rate = 0.1
    config.pretrained_dir = ""  # From scratch.

    config.dataset = "imagenet21k"
    config.pp.crop = 224
    config.batch = 4096
    config.batch_eval = 4096

    config.total_steps = EPOCHS * TRAIN_IMAGES // config.batch
    config.loss = "sigmoid_xent"
    config.optimizer = "adamw"
    config.adam_b1 = 0.9
    config.adam_b2 = 0.999
    config.weight_decay = 0.1
    config.grad_norm_clip = 1.0
    config.base_lr = 1e-3
    config.decay_type = "linear"
    config.warmup_steps = 10_000
    # Monitored as in the paper's few-shot figures (ImageNet 5-shot above all), every 10k steps.
    config.fewshot.datasets = ("imagenet2012", "cifar100", "oxford_iiit_pet", "oxford_flowers102")
    config.fewshot.shots = (1, 5, 10, 25)
    config.fewshot.every = 10_000
    config.eval_every = 5_000
    config.progress_every = 100
    config.checkpoint_every = 2_000
    return config
