"""Matmuls that accumulate in float32, with a backward pass in the compute dtype.

Forward: `preferred_element_type=float32`, so bfloat16 operands multiply at bfloat16 speed and
accumulate in float32 (XLA:CPU otherwise converts both operands of a bfloat16 -> bfloat16
matmul to float32 first). Backward: JAX's own transpose of such a matmul multiplies the float32
cotangent with a bfloat16 operand, which promotes both to float32 and runs every backward
matmul at float32 speed (bfloat16 training was only 1.08x float32 on CPU). Here the cotangent
is cast to the operands' dtype first, as in ordinary bfloat16 training, and the backward
matmuls accumulate in float32 too. They are also written so that XLA:CPU keeps them in
bfloat16 (`einsum_f32_materialised`): the weight gradients ran in float32 before, and the
bfloat16 training step was 1.31x slower for it (ViT-B/16, batch 8). The gradient of a dense
kernel with more rows than columns is computed transposed (`_narrowing_kernel_gradient`).

Float32 operands take the plain `jnp.einsum` (JAX's own gradient, which is already all
float32, and forward-mode differentiation keeps working); only other dtypes take the custom
VJP, which supports reverse mode (`jax.grad`, `jax.vjp`) only.

That is the "float32" form of the models' matmuls. The other, "compute", returns the operands'
dtype (rounded after the float32 accumulation), as Flax's `nn.Dense` and torch's autocast do,
with JAX's own gradient; it is the GPU's choice. `matmul_outputs="auto"` takes the default
backend's (`models.backend_tuning`, item 4; `resolve_outputs`), and `einsum`, `matmul` and
`dense_dot_general` run the chosen form.

Which library runs the dense layers' matmuls (`matmul_library`): "xla", or a CPU custom call
(CPU only, an optional build each): "onednn" (`models.onednn_matmul`, bfloat16 or float32) or
"openblas" or "mkl" (`models.cblas_matmul`, float32), for `matmul` and `dense_dot_general` in either
form of outputs; "auto" (the default) takes a custom call where it was measured faster and is
present, else XLA (`models.backend_tuning`, item 5; `resolve_library`).
The attention core's products run by the library `matmul_library` names (`models.attention`); for
"auto", `resolve_attention_products` may pick another for them than for the dense layers.
"""

from __future__ import annotations

import functools
from typing import Literal, get_args

import jax
import jax.numpy as jnp

from vit_jax.errors import ConfigError
from vit_jax.models import backend_tuning
from vit_jax.models.backend_tuning import CUSTOM_CALLS, ResolvedLibrary

MatmulOutputs = Literal["auto", "float32", "compute"]
MATMUL_OUTPUTS: tuple[MatmulOutputs, ...] = get_args(MatmulOutputs)
MatmulLibrary = Literal["auto", "xla", "onednn", "openblas", "mkl"]
MATMUL_LIBRARIES: tuple[MatmulLibrary, ...] = get_args(MatmulLibrary)
# A dense layer's contraction over flattened tokens: x [T, I] @ kernel [I, O] -> [T, O].
DENSE_SPEC = "ti,io->to"


def _operand_specs(spec: str) -> tuple[str, str, str]:
    inputs, output = spec.replace(" ", "").split("->")
    lhs, rhs = inputs.split(",")
    for name, operand, others in (("first", lhs, rhs + output), ("second", rhs, lhs + output)):
        if "." in spec or len(set(operand)) != len(operand) or not set(operand) <= set(others):
            raise ValueError(
                f"einsum_f32 and einsum take two-operand einsums whose every index of the {name} "
                f"operand also appears in the other operand or the output, without '...'; got "
                f"{spec!r}."
            )
    return lhs, rhs, output


def einsum_f32(spec: str, lhs: jax.Array, rhs: jax.Array) -> jax.Array:
    """`jnp.einsum(spec, lhs, rhs)` accumulated and returned in float32; see the module."""
    _operand_specs(spec)
    if lhs.dtype == jnp.float32 and rhs.dtype == jnp.float32:
        return jnp.einsum(spec, lhs, rhs, preferred_element_type=jnp.float32)
    return _einsum_f32_low_precision_backward(spec, lhs, rhs)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _einsum_f32_low_precision_backward(spec: str, lhs: jax.Array, rhs: jax.Array) -> jax.Array:
    return jnp.einsum(spec, lhs, rhs, preferred_element_type=jnp.float32)


def _einsum_f32_fwd(spec, lhs, rhs):
    return _einsum_f32_low_precision_backward(spec, lhs, rhs), (lhs, rhs)


def einsum_f32_materialised(spec: str, lhs: jax.Array, rhs: jax.Array) -> jax.Array:
    """`jnp.einsum(spec, lhs, rhs)` accumulated in float32, with both operands given a leading
    unit axis that is contracted too; this changes no value.

    Why: XLA:CPU's fast low-precision matmul (YNNPACK) takes a dot only in its canonical form
    (batch axes first, the first operand contracted on its last axes). A bfloat16 dot in any
    other form, including one whose operand is a transpose that XLA folds into the dot's
    dimensions, runs in float32 on converted operands: a weight gradient `ti,to->io` ran at 185
    against 400 GFLOP/s, and four of the six attention matmuls of a layer ran so. A transpose
    written out in the program does not help (it is folded), nor does an
    `optimization_barrier`. A dot with two contracted axes, though, is rewritten with
    materialised operands, after which the fast path takes it. On GPU and TPU (not measured)
    it costs at most a transposed copy of an operand.
    """
    lhs_spec, rest = spec.replace(" ", "").split(",")
    unit = next(c for c in "zyxwvutsrqponmlkjihgfedcba" if c not in spec)
    spec = f"{unit}{lhs_spec},{unit}{rest}"
    return jnp.einsum(spec, lhs[None], rhs[None], preferred_element_type=jnp.float32)


def _backward_einsum(first_spec, first, second_spec, second, out_spec) -> jax.Array:
    """One transposed einsum of the backward pass, accumulated in float32; materialised
    (`einsum_f32_materialised`) where the first operand's contracted axes do not come last."""
    spec = f"{first_spec},{second_spec}->{out_spec}"
    contracted = [index for index in first_spec if index not in out_spec]
    trailing = first_spec[len(first_spec) - len(contracted) :]
    if contracted and sorted(contracted) != sorted(trailing):
        return einsum_f32_materialised(spec, first, second)
    return jnp.einsum(spec, first, second, preferred_element_type=jnp.float32)


def _narrowing_kernel_gradient(x: jax.Array, cotangent: jax.Array) -> jax.Array:
    """The gradient of a dense kernel [I, O] with more rows than columns (I > O), from the
    layer's input `x` [T, I] and output cotangent [T, O]: computed as its transpose [O, I] and
    transposed back. In ViT-B/16 that is the MLP's second layer; also patch embeddings with
    P * P * 3 > D (B/32, S/16, Ti/16) and heads with fewer classes than D (measured only for
    B/16). Low-precision compute with "float32" matmul outputs only (the CPU's and TPU's
    "auto"; GPU only with "float32" set): float32 and "compute" outputs keep JAX's gradient.

    Why: the plain form multiplies a transposed copy of `x` [I, T] by the cotangent, and on
    XLA:CPU that copy (of the MLP's widest activation) and that product both ran slowly inside
    the training step; this form transposes the narrower cotangent instead, and the product's
    output is [O, I], wide like the first MLP layer's weight gradient. ViT-B/16 bfloat16 trainer
    step, in-process A/B on the AMD EPYC host (`benchmarks.kernel_gradient_orientation`;
    benchmarks/RESULTS.md, session 36): 1.03-1.11x at batch 32 (three runs), 0.96x and 0.98x at
    batch 8 (the same micro-batches; within that VM's drift). The barrier keeps XLA from folding
    the transpose into the product's output layout: a bfloat16 dot so laid out is one YNNPACK
    does not take, and XLA:CPU's own dot cannot run it ("Unsupported element type for
    DotThunk::Execute: BF16 x BF16 = F32"). On TPU and GPU (not measured) it costs a transposed
    copy of the gradient.
    """
    transposed = einsum_f32_materialised("to,ti->oi", cotangent, x)  # [O, I] float32
    return jax.lax.optimization_barrier(transposed).T  # [I, O]


def _einsum_f32_bwd(spec, residuals, cotangent):
    lhs, rhs = residuals
    lhs_spec, rhs_spec, out_spec = _operand_specs(spec)
    cotangent = cotangent.astype(jnp.result_type(lhs.dtype, rhs.dtype))
    d_lhs = _backward_einsum(out_spec, cotangent, rhs_spec, rhs, lhs_spec)
    if spec == DENSE_SPEC and rhs.shape[0] > rhs.shape[1]:
        d_rhs = _narrowing_kernel_gradient(lhs, cotangent)
    else:
        d_rhs = _backward_einsum(lhs_spec, lhs, out_spec, cotangent, rhs_spec)
    return d_lhs.astype(lhs.dtype), d_rhs.astype(rhs.dtype)


_einsum_f32_low_precision_backward.defvjp(_einsum_f32_fwd, _einsum_f32_bwd)


def matmul_f32(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """`x [..., I] @ kernel [I, O] -> [..., O]` in float32; see the module."""
    return matmul(x, kernel, "float32")


def dot_general_f32(
    lhs: jax.Array,
    rhs: jax.Array,
    dimension_numbers,
    precision=None,
    preferred_element_type=None,
) -> jax.Array:
    """A `dot_general` for `nn.Dense(dot_general=...)`: `matmul_f32` for Dense's contraction
    (last axis of the input with the kernel's first), `lax.dot_general` with float32
    accumulation otherwise."""
    if _is_dense(lhs, rhs, dimension_numbers, precision):
        return matmul_f32(lhs, rhs)
    return jax.lax.dot_general(
        lhs, rhs, dimension_numbers, precision=precision, preferred_element_type=jnp.float32
    )


def check_outputs(outputs: str) -> None:
    """Raises a ConfigError naming the choices unless `outputs` is one of them."""
    if outputs not in MATMUL_OUTPUTS:
        raise ConfigError(
            f"Unknown matmul_outputs {outputs!r} (config key model.matmul_outputs); expected "
            f"one of {MATMUL_OUTPUTS}: 'float32' keeps a bfloat16 model's matmul outputs in "
            "float32 until the bias and activation, 'compute' returns them in the compute "
            "dtype, 'auto' takes the backend's choice (models/backend_tuning.py)."
        )


def check_library(library: str, dtype: object | None = None) -> None:
    """Raises a ConfigError naming the choices unless `library` is one of them, or, given the
    compute `dtype`, saying why a custom call ("onednn", "openblas", "mkl") cannot run it in this
    process."""
    if library not in MATMUL_LIBRARIES:
        raise ConfigError(
            f"Unknown matmul_library {library!r} (config key model.matmul_library); expected "
            f"one of {MATMUL_LIBRARIES}: 'xla' runs the matmuls by XLA, 'onednn' by oneDNN's "
            "custom call (CPU only, the `onednn` extra; models/onednn_matmul.py), 'openblas' and "
            "'mkl' by OpenBLAS's and MKL's (CPU and float32 only, the `openblas` and `mkl` "
            "extras; models/cblas_matmul.py), 'auto' (the default) takes one of them where it is "
            "present and measured faster (models/backend_tuning.py, item 5)."
        )
    if library in CUSTOM_CALLS and dtype is not None:
        reason = backend_tuning.custom_call_unavailable(library, dtype)
        if reason is not None:
            raise ConfigError(
                f"matmul_library {library!r} cannot run here: {reason}. Set "
                "model.matmul_library to 'xla' (the same model with XLA's matmuls)."
            )


def resolve_outputs(outputs: MatmulOutputs) -> Literal["float32", "compute"]:
    """`outputs` with "auto" replaced by the default backend's choice (see the module)."""
    check_outputs(outputs)
    return backend_tuning.for_default_backend().matmul_outputs if outputs == "auto" else outputs


def resolve_library(library: MatmulLibrary, dtype: object) -> ResolvedLibrary:
    """`library` for matmuls of `dtype` operands, with "auto" replaced by this process's
    choice (`backend_tuning.auto_matmul_library`)."""
    check_library(library)
    return backend_tuning.auto_matmul_library(dtype) if library == "auto" else library


def resolve_attention_products(library: MatmulLibrary, dtype: object) -> ResolvedLibrary:
    """The library that runs the explicit attention core's batched products for `dtype` operands:
    `library`, with "auto" replaced by this process's choice for them
    (`backend_tuning.auto_attention_products`; it differs from the dense layers' on AMD CPUs with
    AVX-512 bf16)."""
    check_library(library)
    return backend_tuning.auto_attention_products(dtype) if library == "auto" else library


def _in_compute_dtype(outputs: MatmulOutputs, *operands: jax.Array) -> bool:
    """Whether a matmul of `operands` returns their own low-precision dtype."""
    float32 = all(x.dtype == jnp.float32 for x in operands)
    return resolve_outputs(outputs) == "compute" and not float32


def einsum(spec: str, lhs: jax.Array, rhs: jax.Array, outputs: MatmulOutputs) -> jax.Array:
    """`jnp.einsum(spec, lhs, rhs)` accumulated in float32 and returned in float32
    (`einsum_f32`) or, with "compute" outputs, in the operands' dtype (JAX's own einsum)."""
    if _in_compute_dtype(outputs, lhs, rhs):
        _operand_specs(spec)  # The same einsums in both forms, so a switch cannot break a caller.
        return jnp.einsum(spec, lhs, rhs)
    return einsum_f32(spec, lhs, rhs)


def matmul(
    x: jax.Array, kernel: jax.Array, outputs: MatmulOutputs, library: MatmulLibrary = "xla"
) -> jax.Array:
    """`x [..., I] @ kernel [I, O] -> [..., O]`, returned as `outputs` says (`einsum`), its
    products run by `library` (see the module)."""
    flat = x.reshape(-1, x.shape[-1])  # [T, I]
    resolved = resolve_library(library, flat.dtype)
    if resolved == "xla":
        out = einsum(DENSE_SPEC, flat, kernel, outputs)  # [T, O]
    else:
        check_library(resolved, flat.dtype)
        out = CUSTOM_CALLS[resolved].dense(flat, kernel)  # [T, O] float32
        if _in_compute_dtype(outputs, flat, kernel):
            out = out.astype(flat.dtype)
    return out.reshape(*x.shape[:-1], kernel.shape[-1])


def _is_dense(lhs, rhs, dimension_numbers, precision) -> bool:
    """Whether a `dot_general` is `nn.Dense`'s: the input's last axis with a 2-D kernel's
    first, no batch axes, default precision."""
    (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = dimension_numbers
    return (
        tuple(lhs_contract) == (lhs.ndim - 1,)
        and tuple(rhs_contract) == (0,)
        and rhs.ndim == 2
        and not lhs_batch
        and not rhs_batch
        and precision is None
    )


def dense_dot_general(outputs: MatmulOutputs, library: MatmulLibrary = "xla"):
    """A `dot_general` for `nn.Dense(dot_general=...)` that returns what `outputs` says:
    `dot_general_f32`, or `lax.dot_general` in the operands' dtype (Flax's own) for "compute"
    outputs of low-precision operands; with a custom call's `library` ("onednn", "openblas", "mkl"),
    Dense's contraction runs by it (`matmul`), and with "auto" where `resolve_library` says
    so."""
    check_outputs(outputs)  # An unknown value fails when the module is traced, not later.
    check_library(library)

    def dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
        if _is_dense(lhs, rhs, dimension_numbers, precision):
            resolved = resolve_library(library, lhs.dtype)
            if resolved != "xla":
                return matmul(lhs, rhs, outputs, resolved)
        if _in_compute_dtype(outputs, lhs, rhs):
            return jax.lax.dot_general(lhs, rhs, dimension_numbers, precision=precision)
        return dot_general_f32(lhs, rhs, dimension_numbers, precision, preferred_element_type)

    return dot_general
