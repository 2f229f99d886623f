"""The search's pruning and ranking, on stand-in plans (no compiler needed)."""

from __future__ import annotations

from tests.plan.conftest import small_config
from vit_jax.plan import search
from vit_jax.plan.compile import Plan, StepCost
from vit_jax.plan.topology import CHIPS, GIB, Topology


def fake_plan(config, gib: float, flops: float) -> Plan:
    topology = Topology("v5e:4x4", "v5e", CHIPS["v5e"], 1, list(range(16)), "TPU v5 lite")
    half = int(gib * GIB / 2)
    cost = StepCost(half, half, half, half, flops, flops, 1.0)  # Half state, half temporaries.
    fsdp = config.mesh.fsdp
    return Plan(topology, {"data": 16 // fsdp, "fsdp": fsdp}, config.batch, 1,
                config.model.remat, config.model.scan_layers, cost, None, 0.1)  # fmt: skip


def test_search_prunes_and_ranks():
    tried = []

    def compile_plan(config):
        tried.append((config.mesh.fsdp, config.model.remat, config.model.scan_layers))
        # Memory halves per doubling of fsdp, remat saves a third; fits from 14.4 GiB down.
        gib = 40 / config.mesh.fsdp * (2 / 3 if config.model.remat else 1)
        return fake_plan(config, gib, 4.0 if config.model.remat else 3.0)

    ranked = search.search(small_config({"data": -1, "fsdp": 1}), 16, compile_plan)
    # fsdp 1 and 2 do not fit; remat fits at 2 (13.3 GiB); fsdp 4 fits without remat: stop.
    assert (4, False, False) in tried and not any(f > 4 for f, _, _ in tried)
    best_candidate, best = ranked[0]
    assert (best_candidate.fsdp, best_candidate.remat, best.fits) == (4, False, True)
    fits = [p.fits for _, p in ranked]
    assert fits == sorted(fits, reverse=True)  # Everything that fits comes first.


def test_suggestions_name_the_flags():
    config = small_config({"data": -1, "fsdp": 1})
    tips = search.suggestions(fake_plan(config, 30.0, 1.0))
    text = " ".join(tips)
    assert "--config.mesh.fsdp=" in text and "--config.model.remat=True" in text
