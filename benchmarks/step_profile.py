"""Where the trainer's step spends its time: a `jax.profiler` trace of the trainer's own step
(`model_throughput.trainer_step_fn`, at its defaults), aggregated by HLO instruction.

    python -m benchmarks.step_profile [--model ViT-B_16] [--batch 8] [--dtype bfloat16]
        [--steps 2] [--top 25] [--image_size 224] [--json]

Per step (the mean over `--steps` traced steps, after two untraced ones):
- the summary: wall seconds; op seconds (every op's duration, summed over threads, so ops that
  run at once count each); minor page faults and system CPU seconds of the process;
- the timeline: the share of the traced ops' span (first op's start to last op's end) in which one
  dot runs alone, two or more dots, a dot beside other ops, only other ops, and nothing (the gaps
  between steps included). A dot uses every thread of XLA's pool when it runs alone, other ops
  mostly one or two, so the shares say what a change could gain: only time on the critical path
  shortens the step;
- rows: the `--top` groups of instructions by op time, dots grouped by the model's layer, the
  product and its shapes (GFLOP/s from their FLOPs; "custom-call dot": a CPU custom call's batched
  matmul, `matmul_library`), other ops by fusion kind, result shape and layer. The encoder's blocks
  are one group ("encoderblock_*").

Run it as `python -m benchmarks.step_profile`: the command re-executes itself with huge pages for
XLA:CPU's buffers, as the trainer does (`vit_jax.cli.huge_pages`); run as a file it would not,
and every step would take ~300,000 more page faults (benchmarks/RESULTS.md, "Page faults").
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import functools
import math
import pathlib
import re
import resource
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence

import jax
import jax.numpy as jnp

from benchmarks import common, model_throughput
from vit_jax import models
from vit_jax.models import backend_tuning

# One HLO instruction line: `[ROOT] %name = shape op(...)...`, the shape an array's or a tuple's.
_INSTRUCTION = re.compile(
    r"^\s*(?:ROOT )?%?([\w.\-]+) = (\((?:[^()]|\([^()]*\))*\)\S*|\S+) ([\w\-]+)\((.*)$"
)
# Instructions whose bodies run as ops of their own: their time would count twice.
_CONTROL_FLOW = ("while", "call", "conditional")
# The CPU custom calls' batched matmuls (`models.native_matmul`): dots too.
_MATMUL_TARGETS = {library.TARGET for library in backend_tuning.CUSTOM_CALLS.values()}
# A computation's header: `[ENTRY] %name (param: shape, ...) -> shape {`.
_COMPUTATION = re.compile(r"^(?:ENTRY )?%?([\w.\-]+) \((.*?)\) -> .*\{$", re.M)
_SHAPE = re.compile(r"^\(?(\w+)\[([\d,]*)\]")
# Timeline categories, in the order they are reported.
TIMELINE = ("one_dot", "two_or_more_dots", "dot_beside_other", "other_only", "idle")


@dataclasses.dataclass(frozen=True)
class Instruction:
    kind: str  # The name's stem ("ynn_fusion", "copy", ...); "custom-call dot": `_MATMUL_TARGETS`.
    shape: str  # Its result, without the layout: "bf16[768,3072]".
    layer: str  # Its op_name metadata, shortened (`_short_layer`).
    dot_flops: int  # The FLOPs of the dot it is or fuses (2 x multiply-adds), else 0.


def _dims(shape: str) -> tuple[str, list[int]] | None:
    match = _SHAPE.match(shape)
    if match is None:
        return None
    return match.group(1), [int(d) for d in match.group(2).split(",") if d]


def _lhs_and_out(rest: str, out_shape: str, shapes: Mapping[str, str]):
    """(the first operand's dims, the result's dims) of an instruction whose operands and
    attributes are `rest`, or None where either cannot be read."""
    operands = re.findall(r"%([\w.\-]+)", rest.split(")")[0])
    lhs, out = _dims(shapes.get(operands[0], "")) if operands else None, _dims(out_shape)
    return None if lhs is None or out is None else (lhs[1], out[1])


def _dot_flops(rest: str, out_shape: str, shapes: Mapping[str, str]) -> int:
    """2 x output elements x contracted size of a dot whose operands and attributes are `rest`."""
    dims = _lhs_and_out(rest, out_shape, shapes)
    contracting = re.search(r"lhs_contracting_dims=\{([\d,]*)\}", rest)
    if dims is None or contracting is None:
        return 0
    lhs, out = dims
    return 2 * math.prod(out) * math.prod(lhs[int(i)] for i in contracting.group(1).split(",") if i)


def _custom_matmul_flops(rest: str, out_shape: str, shapes: Mapping[str, str]) -> int:
    """The FLOPs of a `_MATMUL_TARGETS` custom call: lhs [..., M, K], or [..., K, M] with
    `lhs_transposed`, -> [..., M, N]."""
    dims = _lhs_and_out(rest, out_shape, shapes)
    if dims is None or len(dims[0]) < 2:
        return 0
    lhs, out = dims
    transposed = re.search(r"lhs_transposed = true", rest) is not None
    return 2 * math.prod(out) * lhs[-2 if transposed else -1]


def _short_layer(op_name: str) -> str:
    """An op_name metadata path as "backward: encoderblock_*/MlpBlock_3/Dense_1/to,io->ti": the
    pass (by JAX's transformation names), then the module path below the model's blocks."""
    passes = "backward: " if "transpose(" in op_name else "forward: " if "jvp(" in op_name else ""
    tail = op_name.rsplit(")/", 1)[-1]  # Below jit(...), jvp(...) and transpose(...).
    tail = re.sub(r"^\w+\.forward_\w+/(Transformer/)?", "", tail)  # "VisionTransformer.forward_*".
    tail = re.sub(r"encoderblock_\d+", "encoderblock_*", tail)
    return passes + tail.removesuffix("/dot_general")


def parse_hlo(text: str) -> dict[str, Instruction]:
    """The instructions of a compiled module's HLO text that run as ops of their own, by name:
    not those inside a fusion's body (the fusion runs them, and its dot FLOPs count theirs), nor
    control flow (`_CONTROL_FLOW`: its body's instructions are the ops)."""
    shapes: dict[str, str] = {}
    for header in _COMPUTATION.finditer(text):
        for name, shape in re.findall(r"([\w.\-]+): (\w+\[[\d,]*\])", header.group(2)):
            shapes[name] = shape
    lines = []  # (computation, instruction line)
    computation = None
    for row in text.splitlines():
        header = _COMPUTATION.match(row)
        if header:
            computation = header.group(1)
        elif line := _INSTRUCTION.match(row):
            lines.append((computation, line))
            shapes[line.group(1)] = line.group(2)

    def flops_of(shape: str, op: str, rest: str) -> int:
        if op == "dot":
            return _dot_flops(rest, shape, shapes)
        target = re.search(r'custom_call_target="([^"]*)"', rest)
        if op == "custom-call" and target and target.group(1) in _MATMUL_TARGETS:
            return _custom_matmul_flops(rest, shape, shapes)
        return 0

    # The fusions' bodies, and their dots' FLOPs (a fusion nested in a body adds its own).
    calls = {}
    for _, line in lines:
        name, shape, op, rest = line.groups()
        if op == "fusion" and (called := re.search(r"calls=%?([\w.\-]+)", rest)):
            calls[name] = called.group(1)
    body_lines = collections.defaultdict(list)
    for computation, line in lines:
        body_lines[computation].append(line)

    @functools.cache
    def body_flops(computation: str) -> int:
        total = 0
        for line in body_lines[computation]:
            name, shape, op, rest = line.groups()
            total += body_flops(calls[name]) if name in calls else flops_of(shape, op, rest)
        return total

    fused = set(calls.values())
    instructions = {}
    for computation, line in lines:
        name, shape, op, rest = line.groups()
        if computation in fused or op in _CONTROL_FLOW:
            continue
        flops = body_flops(calls[name]) if name in calls else flops_of(shape, op, rest)
        path = re.search(r'op_name="([^"]*)"', rest)
        layer = _short_layer(path.group(1)) if path else ""
        layout_free = re.sub(r"\{[^}]*\}", "", shape)
        custom_matmul = op == "custom-call" and flops > 0
        kind = "custom-call dot" if custom_matmul else name.split(".")[0]
        instructions[name] = Instruction(kind, layout_free, layer, flops)
    return instructions


@dataclasses.dataclass(frozen=True)
class OpEvent:
    thread: str
    start_ns: int
    duration_ns: int
    name: str


def op_events(trace_dir: pathlib.Path, names: Iterable[str]) -> list[OpEvent]:
    """The trace's events whose names are HLO instructions of the profiled program."""
    wanted = set(names)
    traces = list(trace_dir.glob("**/*.xplane.pb"))
    if len(traces) != 1:
        raise RuntimeError(
            f"expected one jax.profiler trace (*.xplane.pb) under {trace_dir}, found "
            f"{len(traces)}: is another profiler session running in this process?"
        )
    profile = jax.profiler.ProfileData.from_file(str(traces[0]))
    events = []
    for plane in profile.planes:
        for line in plane.lines:
            for event in line.events:
                if event.name in wanted:
                    thread = f"{plane.name}/{line.name}"
                    events.append(OpEvent(thread, event.start_ns, event.duration_ns, event.name))
    return events


def timeline_shares(events: Sequence[OpEvent], is_dot: Mapping[str, bool]) -> dict[str, float]:
    """The share of the events' span (first start to last end) spent in each of `TIMELINE`'s
    states."""
    changes = []
    for e in events:
        changes += [
            (e.start_ns, 1, is_dot[e.name]),
            (e.start_ns + e.duration_ns, -1, is_dot[e.name]),
        ]
    changes.sort(key=lambda c: (c[0], c[1]))  # Ends before starts at the same instant.
    spent = dict.fromkeys(TIMELINE, 0)
    running = {True: 0, False: 0}  # Dots, other ops.
    last = changes[0][0] if changes else 0
    for instant, change, dot in changes:
        dots, others = running[True], running[False]
        state = (
            ("two_or_more_dots" if dots > 1 else "dot_beside_other" if others else "one_dot")
            if dots
            else ("other_only" if others else "idle")
        )
        spent[state] += instant - last
        running[dot] += change
        last = instant
    total = sum(spent.values())
    return {state: (ns / total if total else 0.0) for state, ns in spent.items()}


def group_rows(
    events: Sequence[OpEvent], instructions: Mapping[str, Instruction], steps: int, top: int
) -> list[dict]:
    """The `top` groups of instructions by op time per step (see the module)."""
    seconds = collections.Counter()
    calls = collections.Counter()
    flops = collections.Counter()
    for e in events:
        instruction = instructions[e.name]
        dot = instruction.dot_flops > 0
        kind = "dot" if dot and instruction.kind != "custom-call dot" else instruction.kind
        key = (kind, instruction.shape, instruction.layer)
        seconds[key] += e.duration_ns / 1e9 / steps
        calls[key] += 1 / steps
        flops[key] += instruction.dot_flops / steps
    total = sum(seconds.values())
    rows = []
    for key, spent in seconds.most_common(top):
        kind, shape, layer = key
        rows.append({
            "kind": kind,
            "ms_per_step": 1e3 * spent,
            "share": spent / total,
            "calls": round(calls[key]),
            "gflop_s": flops[key] / spent / 1e9 if flops[key] and spent else None,
            "shape": shape,
            "layer": layer,
        })  # fmt: skip
    return rows


def profile_step(name: str, batch: int, dtype: str, image_size: int, steps: int, top: int):
    """(summary, timeline shares, rows) of the trainer's step; see the module."""
    model = models.get_model(name, num_classes=1000, dtype=jnp.dtype(dtype))
    params = model_throughput.random_params(model, image_size)
    images, labels = model_throughput.random_batch(batch, image_size)
    accum_steps = model_throughput.default_accum_steps(model, params, batch)
    step, tx = model_throughput.trainer_step_fn(model, accum_steps)
    state = model_throughput.initial_train_state(params, tx)
    data = {"image": images, "label": labels}
    compiled = step.lower(state, data).compile()
    instructions = parse_hlo(compiled.as_text())
    for _ in range(2):  # Untraced: the first calls map their buffers.
        state, metrics = compiled(state, data)
        jax.block_until_ready(metrics)
    with tempfile.TemporaryDirectory() as trace_dir:
        jax.profiler.start_trace(trace_dir)
        before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        for _ in range(steps):  # Timed inside the trace: its start and stop are not the step's.
            state, metrics = compiled(state, data)
            jax.block_until_ready(metrics)
        wall = (time.perf_counter() - started) / steps
        after = resource.getrusage(resource.RUSAGE_SELF)
        jax.profiler.stop_trace()
        events = op_events(pathlib.Path(trace_dir), instructions)
    if not events:
        raise RuntimeError(
            "no profiler event matched an instruction of the compiled step's HLO: this jax's "
            "profiler names its CPU ops differently; benchmarks/step_profile.py needs updating"
        )
    op_seconds = sum(e.duration_ns for e in events) / 1e9 / steps
    dot_flops = sum(instructions[e.name].dot_flops for e in events) / steps
    summary = {
        "model": name,
        "batch": batch,
        "dtype": dtype,
        "accum_steps": accum_steps,
        "wall_s": wall,  # Traced steps: compare within one profile, not with untraced runs.
        "op_s": op_seconds,
        "ops_at_once": op_seconds / wall,
        "dot_gflop": dot_flops / 1e9,
        "dot_share_of_op_time": sum(
            e.duration_ns for e in events if instructions[e.name].dot_flops
        ) / 1e9 / steps / op_seconds,
        "minor_page_faults": (after.ru_minflt - before.ru_minflt) / steps,
        "system_cpu_s": (after.ru_stime - before.ru_stime) / steps,
    }  # fmt: skip
    is_dot = {name: instruction.dot_flops > 0 for name, instruction in instructions.items()}
    return summary, timeline_shares(events, is_dot), group_rows(events, instructions, steps, top)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ViT-B_16")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"])
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.top < 1:
        parser.error("--steps and --top must be at least 1")
    summary, timeline, rows = profile_step(
        args.model, args.batch, args.dtype, args.image_size, args.steps, args.top
    )
    if not args.json:  # Three digits are what the table shows too.
        summary = {k: float(f"{v:.3g}") if isinstance(v, float) else v for k, v in summary.items()}
        timeline = {k: float(f"{v:.3g}") for k, v in timeline.items()}
    common.report(rows, as_json=args.json, header={"summary": summary, "timeline": timeline})


if __name__ == "__main__":
    from vit_jax.cli import huge_pages

    huge_pages.reexec_with_huge_pages("benchmarks.step_profile")
    main()
