"""Few-shot linear evaluation of frozen ViT features (the ViT paper, Section 4.1 "Metrics").

A regularised least-squares map from the frozen pre-logits features (or the pooled encoder
output when a model has no pre-logits layer) of K * n training images to {-1, 1}^K targets,
solved in closed form, scores a representation without fine-tuning it:

    python -m vit_jax.fewshot --checkpoint ViT-B_16.npz --dataset cifar100 --shots 1 5 10 25

During training, `config.fewshot.datasets` (see configs/base.py) adds the same numbers to
metrics.jsonl and TensorBoard as `fewshot/<dataset>/<n>shot`.

The regularisation rule: per dataset, shot count and seed, every strength of
`ridge.L2_GRID` is fitted on the n-shot examples and scored on `holdout` further training
examples per class; the best held-out accuracy wins (ties: the larger strength); test
images play no part in the choice. Accuracies are averaged over `seeds` draws.
"""

from vit_jax.fewshot.evaluator import (
    PRESETS,
    FewShotEvaluator,
    Settings,
    Splits,
    data_config,
    for_run,
)
from vit_jax.fewshot.published import evaluate_checkpoint
from vit_jax.fewshot.report import Results, format_table, to_scalars
from vit_jax.fewshot.ridge import L2_GRID

__all__ = [
    "L2_GRID",
    "PRESETS",
    "FewShotEvaluator",
    "Results",
    "Settings",
    "Splits",
    "data_config",
    "evaluate_checkpoint",
    "for_run",
    "format_table",
    "to_scalars",
]
