"""benchmarks/step_profile.py: the HLO it reads (dot FLOPs, layer names), the timeline's
arithmetic, and a profile of a small model's trainer step (its FLOPs, not its speed)."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import pytest

from benchmarks import step_profile
from tests.benchmarks.vit_flops import forward_matmul_flops


def test_parse_hlo_counts_a_dots_flops():
    x, w = jnp.ones((8, 16), jnp.float32), jnp.ones((16, 4), jnp.float32)
    batched = jnp.ones((3, 5, 7), jnp.float32), jnp.ones((3, 7, 2), jnp.float32)
    text = jax.jit(lambda x, w, a, b: (x @ w, a @ b)).lower(x, w, *batched).compile().as_text()
    flops = sorted(i.dot_flops for i in step_profile.parse_hlo(text).values() if i.dot_flops)
    # [8, 16] x [16, 4], and three [5, 7] x [7, 2]: 2 x output elements x contracted size.
    assert flops == [2 * 3 * 5 * 2 * 7, 2 * 8 * 4 * 16]


# Hand-written in XLA:CPU's HLO text form: a fusion whose body holds a dot and a nested fusion
# with another, a tuple-shaped instruction, a while loop whose body holds a custom-call matmul.
HLO = """
HloModule m

%inner (p0: f32[2,3], p1: f32[3,4]) -> f32[2,4] {
  %p0 = f32[2,3]{1,0} parameter(0)
  %p1 = f32[3,4]{1,0} parameter(1)
  ROOT %dot.2 = f32[2,4]{1,0} dot(%p0, %p1), lhs_contracting_dims={1}, rhs_contracting_dims={0}
}

%outer (a: bf16[8,16], b: bf16[16,5]) -> f32[8,5] {
  %a = bf16[8,16]{1,0} parameter(0)
  %b = bf16[16,5]{1,0} parameter(1)
  %c = f32[2,3]{1,0} constant({...})
  %d = f32[3,4]{1,0} constant({...})
  %nested.1 = f32[2,4]{1,0} fusion(%c, %d), kind=kOutput, calls=%inner
  ROOT %dot.1 = f32[8,5]{1,0} dot(%a, %b), lhs_contracting_dims={1}, rhs_contracting_dims={0}
}

%body (state: (s32[], bf16[4,6,7])) -> (s32[], bf16[4,6,7]) {
  %state = (s32[], bf16[4,6,7]{2,1,0}) parameter(0)
  %x = bf16[4,6,7]{2,1,0} get-tuple-element(%state), index=1
  %ffi_call.1 = f32[4,7,7]{2,1,0} custom-call(%x, %x), custom_call_target="TARGET", \
backend_config={lhs_transposed = true, rhs_transposed = false}
  %i = s32[] get-tuple-element(%state), index=0
  ROOT %t = (s32[], bf16[4,6,7]{2,1,0}) tuple(%i, %x)
}

ENTRY %main (a: bf16[8,16], b: bf16[16,5], s: (s32[], bf16[4,6,7])) -> f32[8,5] {
  %a = bf16[8,16]{1,0} parameter(0)
  %b = bf16[16,5]{1,0} parameter(1)
  %s = (s32[], bf16[4,6,7]{2,1,0}) parameter(2)
  %multi.1 = (f32[8]{0}, f32[8]{0}) fusion(%a), kind=kLoop, calls=%outer
  %while.1 = (s32[], bf16[4,6,7]{2,1,0}) while(%s), condition=%c, body=%body
  ROOT %ynn_fusion.1 = f32[8,5]{1,0} fusion(%a, %b), kind=kCustom, calls=%outer, \
metadata={op_name="jit(train_step)/jvp(VisionTransformer)/VisionTransformer.forward_head/head/dot_general"}
}
"""


def test_parse_hlo_reads_fusions_tuples_loops_and_custom_call_matmuls():
    text = HLO.replace("TARGET", "vit_jax_onednn_batched_matmul")
    instructions = step_profile.parse_hlo(text)
    # A fusion's body and control flow are not ops of their own; the loop's body's are.
    assert set(instructions) >= {"multi.1", "ynn_fusion.1", "ffi_call.1", "x", "t"}
    assert not {"dot.1", "dot.2", "nested.1", "while.1"} & set(instructions)
    outer = 2 * 8 * 5 * 16 + 2 * 2 * 4 * 3  # Its dot and the nested fusion's.
    assert instructions["ynn_fusion.1"].dot_flops == outer
    assert instructions["ynn_fusion.1"].layer == "forward: head"
    assert instructions["multi.1"] == step_profile.Instruction(
        "multi", "(f32[8], f32[8])", "", outer
    )
    # lhs [4, 6, 7] taken transposed: M = 7, K = 6.
    assert instructions["ffi_call.1"].dot_flops == 2 * 4 * 7 * 7 * 6
    assert instructions["ffi_call.1"].kind == "custom-call dot"
    assert instructions["t"].dot_flops == 0
    other_target = step_profile.parse_hlo(HLO)["ffi_call.1"]
    assert (other_target.kind, other_target.dot_flops) == ("ffi_call", 0)


def test_short_layer_names_the_pass_and_merges_the_blocks():
    backward = (
        "jit(train_step)/while/body/closed_call/transpose(jvp(VisionTransformer))/"
        "VisionTransformer.forward_features/Transformer/encoderblock_7/MlpBlock_3/Dense_1/"
        "zto,zti->oi/dot_general"
    )
    forward = "jit(train_step)/jvp(VisionTransformer)/VisionTransformer.forward_head/head/add"
    assert step_profile._short_layer(backward) == (
        "backward: encoderblock_*/MlpBlock_3/Dense_1/zto,zti->oi"
    )
    assert step_profile._short_layer(forward) == "forward: head/add"
    assert step_profile._short_layer("jit(train_step)/add") == "add"


def test_timeline_shares():
    assert step_profile.timeline_shares([], {}) == dict.fromkeys(step_profile.TIMELINE, 0.0)
    event = step_profile.OpEvent
    events = [
        event("t0", 0, 10, "dot_a"),  # [0, 10): alone for [0, 5), beside "other" for [5, 10).
        event("t1", 5, 10, "other"),  # [5, 15): alone for [10, 15).
        event("t0", 20, 10, "dot_a"),  # [20, 30), after 5 idle; two dots for [25, 30).
        event("t1", 25, 5, "dot_b"),
    ]
    events += [
        event("t1", 15, 0, "other"),  # Zero length, where "other" ends: changes nothing.
        event("t1", 30, 0, "dot_b"),  # Zero length, at the end.
    ]
    shares = step_profile.timeline_shares(events, {"dot_a": True, "dot_b": True, "other": False})
    assert list(shares) == list(step_profile.TIMELINE)
    assert shares == pytest.approx({
        "one_dot": 10 / 30,
        "two_or_more_dots": 5 / 30,
        "dot_beside_other": 5 / 30,
        "other_only": 5 / 30,
        "idle": 5 / 30,
    })  # fmt: skip


@pytest.mark.slow  # CI runs it; `-m "not slow"` skips it in the inner loop.
def test_profile_of_a_small_trainer_step(capsys):
    args = ["--model", "ViT-Ti_16", "--batch", "2", "--image_size", "32", "--dtype", "float32"]
    step_profile.main([*args, "--steps", "1", "--top", "40", "--json"])
    report = json.loads(capsys.readouterr().out)
    summary, rows = report["summary"], report["rows"]
    # The traced step's dots: a forward and two backward products per forward matmul, less the
    # last block's other tokens (the class token alone there); vit_flops.py says by how much.
    wanted = 3 * 2 * forward_matmul_flops("ViT-Ti_16", 32) / 1e9
    assert summary["dot_gflop"] == pytest.approx(wanted, rel=0.15)
    assert summary["op_s"] > 0 and summary["accum_steps"] >= 1
    assert sum(report["timeline"].values()) == pytest.approx(1.0)
    assert len(rows) == 40
    times = [row["ms_per_step"] for row in rows]
    assert times == sorted(times, reverse=True)
    assert sum(row["share"] for row in rows) <= 1.0 + 1e-9
    dots = [row for row in rows if row["kind"] == "dot"]
    assert dots and all(row["gflop_s"] > 0 for row in dots)
    assert any(row["layer"].startswith("backward: encoderblock_*/MlpBlock_3/") for row in dots)
