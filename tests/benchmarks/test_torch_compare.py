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


def test_torch_child_runs_without_our_huge_page_tunable_unless_asked():
    """torch is timed in the environment its users get: the user's own tunables stay."""
    from benchmarks.torch_compare import torch_environment

    ours = {"HOME": "/h", "GLIBC_TUNABLES": "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"}
    assert torch_environment(ours, huge_pages=False) == {
        "HOME": "/h",
        "GLIBC_TUNABLES": "glibc.malloc.arena_max=2",
        "VIT_JAX_HUGE_PAGES": "0",
    }
    assert torch_environment({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}, False) == {
        "VIT_JAX_HUGE_PAGES": "0"
    }
    assert torch_environment(ours, huge_pages=True) == ours
