"""benchmarks/torch_compare.py builds HF transformers' ViT as our variant."""

from __future__ import annotations

import pytest


def test_torch_models_match_our_architecture():
    """The HF ViT the torch benchmarks build has our variant's parameter count."""
    pytest.importorskip("transformers")
    from benchmarks.torch_compare import torch_models

    _, model = torch_models(224, "ViT-Ti_16")
    assert sum(p.numel() for p in model.parameters()) == 5_717_416  # ViT-Ti/16, 1000 classes.
    with pytest.raises(ValueError, match="token-pooled plain ViTs"):
        torch_models(224, "R50+ViT-B_16")
