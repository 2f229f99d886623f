"""benchmarks/kernel_gradient_orientation.py: its "plain" row really compiles the plain weight
gradient, both rows report the same losses, and the ratios' arithmetic (not the speed)."""

from __future__ import annotations

import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import kernel_gradient_orientation as bench
from vit_jax.models import matmul


def _dot_shapes(x: jax.Array, kernel: jax.Array) -> list[str]:
    grad = jax.jit(jax.grad(lambda x, k: jnp.sum(matmul.matmul_f32(x, k)), (0, 1)))
    return sorted(re.findall(r"= (\w+\[[\d,]*\])\S* dot\(", grad.lower(x, kernel).as_text("hlo")))


def test_plain_form_puts_back_the_untransposed_weight_gradient():
    x = jnp.ones((40, 48), jnp.bfloat16)  # [T, I]
    kernel = jnp.ones((48, 32), jnp.bfloat16)  # [I, O], I > O: computed transposed.
    original = matmul._narrowing_kernel_gradient
    transposed = _dot_shapes(x, kernel)
    with bench.kernel_gradient(bench.plain_kernel_gradient):
        plain = _dot_shapes(x, kernel)
    # d_x [T, I] and the kernel's gradient, [O, I] transposed or [I, O] (a sum's gradient
    # needs no forward product).
    assert transposed == ["f32[32,48]", "f32[40,48]"]
    assert plain == ["f32[40,48]", "f32[48,32]"]
    assert matmul._narrowing_kernel_gradient is original  # Restored.
    cotangent = jnp.asarray(np.random.default_rng(0).normal(size=(40, 32)), jnp.bfloat16)
    xs = jnp.asarray(np.random.default_rng(1).normal(size=(40, 48)), jnp.bfloat16)
    np.testing.assert_allclose(
        bench.plain_kernel_gradient(xs, cotangent),
        matmul._narrowing_kernel_gradient(xs, cotangent),
        rtol=1e-5,
        atol=1e-5,
    )


@pytest.mark.slow  # CI runs it; `-m "not slow"` skips it in the inner loop.
def test_rows_ratios_and_losses(capsys, monkeypatch):
    calls = {"transposed": 0, "plain": 0}

    def counted(name, form):
        def wrapped(x, cotangent):
            calls[name] += 1
            return form(x, cotangent)

        return wrapped

    # Each row's step must be traced with its own form (ViT-Ti/16's MLP narrows: 768 -> 192).
    original = matmul._narrowing_kernel_gradient
    monkeypatch.setattr(matmul, "_narrowing_kernel_gradient", counted("transposed", original))
    monkeypatch.setattr(
        bench, "plain_kernel_gradient", counted("plain", bench.plain_kernel_gradient)
    )
    args = ["--model", "ViT-Ti_16", "--batch", "2", "--image_size", "32", "--rounds", "1"]
    bench.main([*args, "--json"])
    assert calls["transposed"] > 0 and calls["plain"] > 0, calls
    report = json.loads(capsys.readouterr().out)
    rows = report["rows"]
    assert [row["kernel_gradient"] for row in rows] == ["transposed", "plain"]
    plain = rows[1]["step_s"]
    for row in rows:
        assert row["img_per_s"] == pytest.approx(2 / row["step_s"])
        assert row["vs_plain"] == pytest.approx(plain / row["step_s"])
    # The same products summed in another order: the losses agree to bfloat16 training's noise.
    losses = [[float(loss) for loss in row["losses"].split()] for row in rows]
    assert losses[0] == pytest.approx(losses[1], rel=1e-3)
