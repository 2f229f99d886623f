"""benchmarks/torch_compare.py: HF transformers' ViT built as our variant, torch's environment, the
child process that times torch, and the interleaved rounds."""

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


def test_training_rounds_interleave_the_rows_and_rotate_who_goes_first(monkeypatch):
    from benchmarks import torch_compare

    monkeypatch.setattr(torch_compare.time, "sleep", lambda seconds: None)
    calls = []

    class FakeChild:
        def __init__(self, name):
            self.name = name

        def train_seconds(self, steps):
            calls.append((self.name, steps))
            return [float(len(calls))] * steps

    children = {"eager": FakeChild("eager"), "compile": FakeChild("compile")}
    seconds = torch_compare.interleaved_train_seconds(
        lambda: calls.append(("ours", 1)), children, rounds=3, steps=2
    )
    rows = [name for name, _ in calls]
    ours = ["ours"] * 3  # One call at a time: an untimed one, then the 2 timed steps.
    assert rows == [
        *ours, "eager", "compile",
        "eager", "compile", *ours,
        "compile", *ours, "eager",
    ]  # fmt: skip
    counts = {row: len(times) for row, times in seconds.items()}
    assert counts == {None: 6, "eager": 6, "compile": 6}


@pytest.mark.slow
def test_torch_child_serves_timed_training_steps():
    """The child process's protocol, on a tiny input: its forward timings, then steps on request."""
    pytest.importorskip("transformers")
    from benchmarks.torch_compare import TorchChild

    child = TorchChild(1, 32, False, "float32", repeats=1)
    try:
        assert child.timings["forward_s"] > 0 and child.timings["first_call_s"] > 0
        seconds = child.train_seconds(2)
        assert len(seconds) == 2 and all(s > 0 for s in seconds)
    finally:
        child.close()
    assert child._process.returncode == 0
