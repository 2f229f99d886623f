r"""Will my run fit? Compiles a config's train and eval steps for a TPU topology, on this CPU.

    python -m vit_jax.plan --config configs/vit_b16_pretrain.py --topology v5e:4x4 \
        --config.batch=1024 [--json] [--search] [--num_slices=2] [--num_classes=N]

Prints per chip the compiled step's argument, temporary, output and aliased bytes, whether
they fit the chip's HBM with headroom, the FLOPs per step and what they imply at the chip's
bfloat16 peak. Exit status 0 when the compile succeeds (fitting or not), 2 on bad input.
Needs libtpu: `pip install -e ".[tpu]"`.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import Any

from vit_jax import errors
from vit_jax.cli import config_flag
from vit_jax.errors import ConfigError
from vit_jax.plan import compile as plan_compile
from vit_jax.plan import search as plan_search
from vit_jax.plan.compile import Plan
from vit_jax.plan.topology import GIB, get_topology

USAGE = (
    "Usage: python -m vit_jax.plan --config=configs/vit_b16_pretrain.py --topology=v5e:4x4 "
    "[--config.KEY=VALUE ...] [--json] [--search]"
)


def _define_flags(flag_values: Any, argv: list[str]) -> Any:
    from absl import flags

    config = config_flag.define_config_flag(flag_values, argv)
    define = dict(flag_values=flag_values)
    flags.DEFINE_string("topology", None, "TPU topology, e.g. v5e:4x4 or v4:4x4x4.", **define)
    flags.DEFINE_integer("num_slices", 1, "Slices joined over DCN ('data' spans them).", **define)
    flags.DEFINE_integer("num_classes", None, "Classes, for a dataset without a preset.", **define)
    flags.DEFINE_float("headroom", plan_compile.DEFAULT_HEADROOM, "HBM kept free.", **define)
    flags.DEFINE_bool("eval", True, "Also compile the eval step.", **define)
    flags.DEFINE_bool("json", False, "Print one JSON object instead of a report.", **define)
    flags.DEFINE_bool("search", False, "Try mesh splits, remat and scan; rank them.", **define)
    flags.mark_flags_as_required(["config", "topology"], flag_values=flag_values)
    return config


def _gib(n: float) -> str:
    return f"{n / GIB:.2f} GiB"


def format_plan(plan: Plan, model_name: str) -> str:
    topo = plan.topology
    mesh = " x ".join(f"{k}={v}" for k, v in plan.mesh.items())
    per_chip = plan.batch // topo.chips
    lines = [
        f"{model_name} on {topo.name} ({topo.chips} x {topo.device_kind}, "
        f"{topo.num_slices} slice{'s' if topo.num_slices > 1 else ''}): mesh {mesh}, "
        f"batch {plan.batch} ({per_chip} per chip, accum_steps {plan.accum_steps}), "
        f"remat {'on' if plan.remat else 'off'}, scan_layers {'on' if plan.scan_layers else 'off'}",
        f"{'per chip':<14}{'train step':>14}{'eval step':>14}",
    ]
    for label, field in [
        ("arguments", "argument_bytes"),
        ("temporaries", "temp_bytes"),
        ("outputs", "output_bytes"),
        ("aliased", "alias_bytes"),
        ("total", "total_bytes"),
    ]:
        ev = _gib(getattr(plan.eval, field)) if plan.eval else "-"
        lines.append(f"{label:<14}{_gib(getattr(plan.train, field)):>14}{ev:>14}")
    budget = (1 - plan.headroom) * plan.hbm_bytes
    lines += [
        f"HBM {_gib(plan.hbm_bytes)} per chip; fits with {plan.headroom:.0%} headroom: "
        f"{'yes' if plan.fits else 'NO'} ({_gib(plan.bytes_per_chip)} of {_gib(budget)})",
        _flops_line(plan),
        f"compile {plan.train.compile_seconds:.1f} s (train)"
        + (f", {plan.eval.compile_seconds:.1f} s (eval)" if plan.eval else ""),
    ]
    for step in (plan.train, plan.eval):
        if step is not None and step.out_of_memory:
            lines.append(f"The TPU compiler refused the program: {step.out_of_memory}")
    if not plan.fits:
        lines.append("To fit, try:")
        lines += [f"  - {s}" for s in plan_search.suggestions(plan)]
    return "\n".join(lines)


def _flops_line(plan: Plan) -> str:
    ceiling, peak = plan.images_per_second_ceiling, plan.topology.chip.peak_flops
    xla = plan.train.xla_flops
    return (
        f"FLOPs per step per chip {plan.train.matmul_flops:.3e} (matmuls; XLA's cost model: "
        + (f"{xla:.3e}, loop bodies counted once)" if xla is not None else "none)")
        + f"; at the {peak / 1e12:g} TFLOP/s bf16 peak a step takes >= "
        f"{plan.step_seconds_bound * 1e3:.3g} ms: <= {ceiling:,.0f} img/s "
        f"({ceiling / plan.topology.chips:,.0f} per chip)"
    )


def format_search(ranked: list[tuple[plan_search.Candidate, Plan]]) -> str:
    lines = [
        "Ranked: fits first, then fewest matmul FLOPs per chip (remat adds recompute), then the "
        "smallest fsdp (least all-gather traffic), then fewest bytes.",
        f"{'#':>2} {'fsdp':>5} {'data':>5} {'remat':>6} {'scan':>5} {'GiB/chip':>9} "
        f"{'fits':>5} {'TFLOP/chip':>11} {'img/s ceil':>11} {'compile s':>10}",
    ]
    for i, (c, p) in enumerate(ranked, 1):
        lines.append(
            f"{i:>2} {c.fsdp:>5} {p.mesh['data']:>5} {c.remat!s:>6} {c.scan_layers!s:>5} "
            f"{p.bytes_per_chip / GIB:>9.2f} {p.fits!s:>5} {p.train.matmul_flops / 1e12:>11.2f} "
            f"{p.images_per_second_ceiling:>11,.0f} {p.train.compile_seconds:>10.1f}"
        )
    return "\n".join(lines)


def run(config: Any, flag_values: Any) -> int:
    topology = get_topology(flag_values.topology, flag_values.num_slices)
    shape = plan_compile.dataset_shape(config, flag_values.num_classes)
    as_json = flag_values.json
    name = config.model.model_name

    if flag_values.search:

        def compile_plan(trial: Any) -> Plan:
            return plan_compile.plan(
                trial, topology, shape, with_eval=False, headroom=flag_values.headroom
            )

        def progress(candidate: plan_search.Candidate, result: Plan | str) -> None:
            what = result if isinstance(result, str) else f"{_gib(result.bytes_per_chip)}"
            print(f"  tried {candidate}: {what}", file=sys.stderr, flush=True)

        ranked = plan_search.search(config, topology.chips, compile_plan, progress)
        if as_json:
            print(json.dumps([{**dataclasses_dict(c), **p.to_json()} for c, p in ranked]))
        else:
            print(format_search(ranked))
        return 0

    result = plan_compile.plan(
        config, topology, shape, with_eval=flag_values.eval, headroom=flag_values.headroom
    )
    if as_json:
        report = {"model": name, **result.to_json()}
        if not result.fits:
            report["suggestions"] = plan_search.suggestions(result)
        print(json.dumps(report))
    else:
        print(format_plan(result, name))
    return 0


def dataclasses_dict(candidate: plan_search.Candidate) -> dict[str, Any]:
    return {f"candidate_{k}": v for k, v in dataclasses.asdict(candidate).items()}


def main(argv: list[str] | None = None) -> int:
    """Parses the command line and plans the run; returns the exit code."""
    from vit_jax.cli import quiet

    quiet.for_command_line()
    argv = list(sys.argv if argv is None else argv)
    parsed = config_flag.parse_command_line(argv, _define_flags, __doc__, USAGE)
    if isinstance(parsed, int):
        return parsed
    config, flag_values = parsed
    try:
        return run(config, flag_values)
    except ConfigError as e:  # Topology, mesh, batch, dataset: one paragraph, status 2.
        return errors.report(e)
