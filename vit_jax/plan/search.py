"""What to change when a run does not fit, and a search over mesh splits, remat and scan.

Ranking (best first): runs that fit; then fewer FLOPs per chip (remat recomputes the
forward pass, about +1/3 of a step's FLOPs; with the 'token' classifier an unrolled model
also skips the last block's other tokens, which a scanned one computes: ViT-B/16 7% fewer);
then the smaller 'fsdp' axis (every step all-gathers the parameters over it, so less
traffic); then fewer bytes per chip.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable

import ml_collections

from vit_jax.errors import ConfigError
from vit_jax.plan.compile import Plan
from vit_jax.plan.topology import GIB


def suggestions(plan: Plan) -> list[str]:
    """Config changes that lower the per-chip bytes of a plan that does not fit."""
    budget = (1.0 - plan.headroom) * plan.hbm_bytes
    chips = plan.topology.chips
    out = []
    state = plan.train.alias_bytes  # The donated train state: parameters, optimizer state.
    if plan.mesh["fsdp"] < chips and state > 0.1 * budget:
        factor = 2 ** max(1, math.ceil(math.log2(state / GIB)))  # About 1 GiB of state left.
        fsdp = min(chips, plan.mesh["fsdp"] * factor)
        out.append(
            f"split parameters and optimizer state over more chips: --config.mesh.fsdp={fsdp} "
            f"(now {plan.mesh['fsdp']}; the state takes {state / GIB:.2f} GiB per chip)"
        )
    if not plan.remat:
        why = (
            " (scan_layers without remat keeps every layer's activations: 3-9x the "
            "temporaries of the unrolled model, benchmarks/RESULTS.md)"
            if plan.scan_layers
            else ""
        )
        out.append(f"recompute activations in the backward pass: --config.model.remat=True{why}")
    temps = plan.train.temp_bytes
    fixed = plan.train.total_bytes - temps
    if temps > 0 and fixed < budget:
        factor = 2 ** math.ceil(math.log2(temps / max(budget - fixed, 1.0)))
        factor = max(factor, 2)
        out.append(
            f"run each batch as micro-batches: --config.accum_steps={plan.accum_steps * factor} "
            f"(activations scale with the per-step batch), or --config.batch="
            f"{plan.batch // factor}"
        )
    out.append("or let `--search` try mesh splits, remat and scan-over-layers")
    return out


@dataclasses.dataclass(frozen=True)
class Candidate:
    fsdp: int
    remat: bool
    scan_layers: bool


def candidates(config: ml_collections.ConfigDict, chips: int) -> list[Candidate]:
    """fsdp over the powers of two that divide the chips; remat and scan off/on."""
    fsdps = [2**i for i in range(int(math.log2(chips)) + 1) if chips % 2**i == 0]
    return [
        Candidate(fsdp, remat, scan)
        for fsdp in fsdps
        for remat in (False, True)
        for scan in (bool(config.model.scan_layers), not config.model.scan_layers)
    ]


def rank_key(plan: Plan) -> tuple:
    return (not plan.fits, plan.train.matmul_flops, plan.mesh["fsdp"], plan.bytes_per_chip)


def search(
    config: ml_collections.ConfigDict,
    chips: int,
    compile_plan: Callable[[ml_collections.ConfigDict], Plan],
    on_result: Callable[[Candidate, Plan | str], None] = lambda c, r: None,
) -> list[tuple[Candidate, Plan]]:
    """Compiles the candidates, pruning those the ranking cannot prefer; best first.

    Once a split fits without remat, larger 'fsdp' cannot rank higher (same FLOPs, more
    traffic), so it stops there; remat is tried only where the split does not fit without.
    Candidates the config rejects (the batch does not divide) are reported and skipped.
    """
    results: list[tuple[Candidate, Plan]] = []
    for candidate in candidates(config, chips):
        fits_plain = any(c.fsdp == candidate.fsdp and not c.remat and p.fits for c, p in results)
        if candidate.remat and fits_plain:
            continue
        if any(p.fits and not c.remat and c.fsdp < candidate.fsdp for c, p in results):
            break
        trial = copy.deepcopy(config)
        with trial.unlocked():
            trial.mesh.data = -1
            trial.mesh.fsdp = candidate.fsdp
            trial.model.remat = candidate.remat
            trial.model.scan_layers = candidate.scan_layers
        try:
            result = compile_plan(trial)
        except ConfigError as e:
            on_result(candidate, str(e))
            continue
        on_result(candidate, result)
        results.append((candidate, result))
    return sorted(results, key=lambda cp: rank_key(cp[1]))
