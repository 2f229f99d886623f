"""Every choice the library makes by backend (CPU, GPU, TPU), and the measurement behind it.

Nothing else in vit_jax branches on the backend: the attention core (`models.attention`, via
`auto_attention`), the matmuls' output dtype (`models.matmul.resolve_outputs`), the
micro-batched inference (`models.micro_batch`) and the trainer (`training.trainer`, which asks
for the platform of its mesh's devices) ask here. A program compiled for other devices than
this process's own (a TPU step planned on a CPU host, an exported model) asks
`attention_compiled_for` and `matmul_outputs_compiled_for`, which need no device to inspect.
Every output is the same within float tolerance whichever choice is made (tested); only speed
differs.

The CPU choices were measured first on a 2-core AMD EPYC VM with AVX-512 (bf16) and a 32 MiB
L3, jax/jaxlib 0.10.2, float32 unless said (benchmarks/RESULTS.md, "Session 2: micro-batched
inference" and "What changed in the library"); the custom calls' (items 2, 3 and 5) on a 2-core
Intel Xeon VM with AVX-512, AMX and a 105 MiB L3 (sessions 27-34), and on the AMD VM again
(session 35). Item 1's GPU choice was measured on NVIDIA H200s (jax 0.11.2, RESULTS.md, "GPU").
Nothing here has been measured on a TPU, so it gets JAX's own defaults.

1. The attention core that `attention_implementation="auto"` runs.
   CPU: "explicit", a softmax attention with q, k and v laid out [B, H, N, K]. On ViT-B/16
   shapes at batch 8, the attention core alone took 14 ms, against 20 ms for
   `jax.nn.dot_product_attention` (XLA path) and 58 ms for einsums over [B, N, H, K]. Its
   bfloat16 gradient is hand-written (`models.attention_core`: 2.2x faster than JAX's).
   GPU: "cudnn", cuDNN's flash attention (`models.attention.even_length_attention`), where it
   runs (`cudnn_attention_runs`: compute capability >= 8.0, bfloat16 or float16 compute,
   head_dim a multiple of 8 up to 128); JAX's pick elsewhere. The trainer's bfloat16 step of
   ViT-B/16 at batch 256 ran at 3289 img/s with it and 2462 with JAX's XLA attention (1.34x;
   one H200, one run each, the first three losses within 5e-4).
   The choice is made when the model is traced, for the process's default backend and its
   first device: a computation placed on another backend (`jax.default_device(cpu)` on a GPU
   host) should set the implementation. Measured on one GPU only (multi-GPU meshes not yet).
   TPU (and other accelerators): `jax.nn.dot_product_attention`. In a process whose default
   backend is that accelerator the model passes `implementation=None` (JAX's pick, which in
   jax 0.10.2 and 0.11.2 is its XLA path).
   Compiled for other devices than the process's own (`python -m vit_jax.plan` on a CPU, an
   export for several platforms): `attention_compiled_for`, "explicit" when a CPU is among
   them, else "xla", so that the host's choice is not compiled in.
   The explicit core's products follow `matmul_library` (item 5).

2. Micro-batched inference (`models.micro_batched_apply` with `micro_batch="auto"`; the
   predictor and the trainer's evaluation). Never used under `jax.grad`: a ViT-B/16 training
   step at batch 8 ran at 63% of the matmul peak in micro-batches, 76% without.
   CPU: micro-batches of `TOKENS_PER_MICRO_BATCH` = 800 tokens (images x tokens per image):
   4 images of 197 tokens at 224 px, 1 image of 577 at 384 px. A whole ViT-B/16 batch of 32
   at 224 px overflows the L3 (77 MB of MLP activations per layer): its forward pass ran at
   66.8% of the matmul peak, micro-batches of 4 at 88.2% (1.32x; ViT-Ti/16 60.4% -> 71.5%,
   1.18x). The best micro-batches were 4-8 images at 224 px and 1-2 at 384 px.
   With a custom call's matmuls (item 5: oneDNN's, OpenBLAS's, MKL's) the CPU's micro-batches
   hold `CUSTOM_CALL_TOKENS_PER_MICRO_BATCH` = 3200 tokens (16 images at 224 px): as in
   training (item 3), the libraries gain from more rows per call. ViT-B/16 forward on the
   Intel host, against the same library's 4-image micro-batches:
   - oneDNN, bfloat16 (session 31): batch 8 in one piece 1.10x (a torch_compare run, its rows
     timed one after the other); batch 32 (one in-process run, round-robin, single calls
     spread 2.4-9.8 s) in 8 images 1.07x, 16 images 1.10x, one piece 1.01x;
   - MKL, float32 (session 34, in one process, round-robin): batch 8 in one piece 1.11x; batch
     32 in 8 images 1.10x, 16 images 1.13x, one piece 1.15x;
   - OpenBLAS, float32 (session 34, likewise): batch 32 in 16 images 1.08x, one piece 1.11x.
   3200 tokens keeps most of the gain and bounds the memory of large batches.
   TPU and GPU: whole batches.

3. Training micro-batches (`config.accum_steps` left unset: the trainer's gradient
   accumulation, `BackendChoices.train_accum_steps`). The same cache limit holds under
   `jax.grad`, but there the batch is split by accumulating the gradients of micro-batches
   (one forward and backward pass each), not by a loop inside the model.
   CPU: the fewest micro-batches for which one layer's widest activation, the MLP's hidden
   layer (images x tokens x mlp_dim x 4 bytes per device: the layer's matmul returns float32
   also for bfloat16 compute, the CPU's matmul outputs of item 4), stays within
   `TRAIN_ACTIVATION_BYTES` = 10 MiB: ViT-B/16 at 224 px trains in micro-batches of 4 images
   (9.7 MB), in float32 and in bfloat16; the digits model (17 tokens, width 128) never
   splits. Measured on the trainer's step (RESULTS.md,
   "Class token only in the last block; micro-batches of 4 images"), img/s by images per
   micro-batch:
   float32 batch 8: 1.62-1.65 (8), 1.70-1.74 (4), 1.74-1.76 (2); bfloat16 batch 8: 2.62-2.71
   (8), 2.83-2.84 (4); float32 batch 32: 1.70-1.81 (8), 1.82-1.86 (4); bfloat16 batch 32:
   3.00-3.09 (8), 3.15-3.18 (4), 3.16 (2). 2 images were within noise of 4, so the larger is
   kept. Earlier, at batch 32, 16 images per micro-batch were slower still (float32 1.46,
   bfloat16 2.41) and one piece slowest (1.22 and 2.07). Measured for ViT-B/16 at 224 px
   only; other shapes follow the same byte budget unmeasured (B/16 at 384 px: 1 image, L/16
   at 224 px: 3).
   With a custom call's matmuls (item 5: "onednn", "openblas", "mkl", or "auto" where it picks one
   for the dense layers) the CPU's budget is `CUSTOM_CALL_TRAIN_ACTIVATION_BYTES` = 40 MiB
   (ViT-B/16 at 224 px: 16 images): their matmuls gain from more rows per call where XLA's lose.
   OpenBLAS, float32 batch 8 (session 32, one in-process run): whole batch 1.088x XLA's 4-image
   step, 4-image pieces 1.029x.
   oneDNN, bfloat16 on the Intel host (RESULTS.md, session 30), against micro-batches of 4 images in
   the same process: batch 8 in one piece 1.13x and 1.03x (two runs); batch 32 in 16 images 1.115x,
   in one piece 1.134x; the whole batch-32 step (`model.apply` under `jax.grad`) 1.12x the trainer's
   in 4-image pieces.
   TPU and GPU: whole batches (one micro-batch).

4. The dtype a bfloat16 (or float16) model's matmuls return (`matmul_outputs="auto"`,
   `models.matmul.resolve_outputs`). Both accumulate in float32; the question is whether the
   product is rounded to the compute dtype before the bias, GELU and residual additions
   ("compute", as Flax's own `nn.Dense` and torch's autocast do) or kept in float32 until then
   ("float32"). Float32 models are the same either way.
   CPU: "float32". XLA:CPU converts both operands of a bfloat16 -> bfloat16 matmul to float32
   first, so only the float32-output form runs at bfloat16 speed (`models.matmul`).
   GPU: "compute": half the bytes through every elementwise fusion and reduction around the
   matmuls, and JAX's own gradient (no unit-axis rewriting for XLA:CPU). The trainer's
   bfloat16 step at batch 256 on one H200 (each setting in a process of its own, same machine,
   two runs each for ViT-B/16): ViT-B/16 3733 and 3734 img/s against 3323 and 3347 with
   "float32" (1.12x); ViT-L/16 1002 against 943 (1.06x) (RESULTS.md, "GPU").
   "compute" is also what AMD GPUs get (the same reasoning; not measured on one).
   TPU (and other accelerators): "float32", as before; nothing measured. The "float32" form's
   backward computes a narrowing kernel's gradient transposed for the CPU's sake
   (`matmul._narrowing_kernel_gradient`), on TPU too: there it costs a transposed copy.
   Compiled for other devices (`matmul_outputs_compiled_for`): the targets' choice where they
   all agree (every one a GPU: "compute"), else "float32".

5. The library that runs the matmuls (`matmul_library`, `models.matmul`): "xla", or a CPU custom
   call (`CUSTOM_CALLS`): "onednn", oneDNN's (`models.onednn_matmul`; the `onednn` extra), or
   "openblas" and "mkl", OpenBLAS's and MKL's (float32; below). Each runs the dense layers' matmuls
   (patch embedding, projections, MLP, pre-logits, head; not a hybrid's ResNet stem) and the
   explicit attention core's six batched products. "auto" (the default, `auto_matmul_library`):
   "onednn" for bfloat16 compute in a process with one CPU device (JAX's default on CPU), where
   oneDNN runs with AMX and the extra is installed (its first use builds the custom call, once per
   toolchain, into the user's cache; where the build fails, "auto" is XLA); "mkl", else "openblas",
   for float32 on Intel AVX-512 CPUs (below). "xla" otherwise: oneDNN's float32 (not faster, below);
   bfloat16 dense layers on CPUs without AMX (on the AMD EPYC host, AVX-512 bf16, oneDNN's step was
   level with XLA's: below; the attention core's products there take oneDNN, see the end of this
   item);
   processes with several devices (a multi-process CPU run, forced host devices), since the custom
   call has no partitioning rule and XLA would gather its operands onto every device, each then
   multiplying the whole batch; GPUs and TPUs; and any program compiled for other devices or
   exported (`model_fields_compiled_for`). On the Intel Xeon host (AVX-512 bf16, AMX, 2 cores;
   RESULTS.md, session 30) the trainer's bfloat16 step of ViT-B/16 at batch 8 was 1.05-1.23x faster
   with it (three in-process runs, micro-batches of 4 images), and 1.07x / 1.04x of torch eager /
   `torch.compile` against 0.94x / 0.91x with XLA's; in float32 it was not (0.98x), as oneDNN's
   float32 dense matmuls are no faster than XLA's there. With oneDNN running the attention core's
   products only (session 29) the bfloat16 step was 0.87x and 1.05x.
   "openblas", OpenBLAS's float32 sgemm as a custom call (`models.cblas_matmul`; CPU and float32
   only, the `openblas` extra), runs the same layers and products. "auto" takes it for float32
   compute in a process with one CPU device, on an Intel CPU where OpenBLAS runs one of its AVX-512
   kernels (`OPENBLAS_AUTO_CORES`, `cpu_vendor`), where the extra is installed and builds. On the
   Intel Xeon host (session 32; its OpenBLAS core "SkylakeX"): one ViT-B/16 MLP matmul alone,
   median GFLOP/s over two runs, by sgemm 136-163 against XLA's 74-102 (torch's MKL 113-187;
   RESULTS.md, "OpenBLAS for float32"); in one program, the layer's twelve forward and backward
   matmuls 1.11-1.12x XLA's (two runs), once the call ran its pieces on XLA's threads (0.95x with
   OpenBLAS's own threads). The forward (inference, then 4-image micro-batches) at batch 8: 4.16
   img/s against XLA's 2.74 across two `torch_compare` runs (1.5x); within each run, 1.03x /
   1.04x of torch eager / compile against 0.71x / 0.66x. The trainer's float32 step at batch 8
   gains less, within this host's noise: in-process against XLA's step at its defaults 1.088x,
   1.106x and 0.979x (three runs); with OpenBLAS for the dense layers only and XLA's attention
   core, 0.982x (in the 1.106x run), so the attention's products by OpenBLAS count; against
   torch 0.898x / 0.944x, against XLA's 0.866x / 0.879x (separate runs). CPUs whose OpenBLAS
   runs its AVX2 kernels were not measured and keep XLA. AMD's AVX-512 CPUs, where OpenBLAS runs
   the same SkylakeX kernels, keep XLA as measured (below).
   "mkl", the same custom call by Intel MKL's sgemm (`models.cblas_matmul`, the `mkl` extra: large,
   about 1 GB installed). "auto" takes it before OpenBLAS for float32 where it is installed and
   builds, on the same CPUs: Intel with AVX-512 (`cpu_has_avx512`; MKL picks its own kernels).
   On the Intel Xeon host (session 33): one MLP matmul single-threaded, MKL's sgemm about 1.1-1.2x
   OpenBLAS's (noisy); the trainer's float32 step at batch 8 in one process, against OpenBLAS's,
   1.133x (MKL 2024.2), 0.997x and 1.095x (MKL 2026.2): about 1.09x, by as much as the noise.
   On the AMD EPYC host (Zen 4: AVX-512 with bf16, no AMX; session 35, one in-process run per
   row, `benchmarks.matmul_library_step`, against XLA's step at its defaults) no custom call
   was faster: float32 batch 8 OpenBLAS 0.979x, oneDNN 0.973x, MKL 0.781x (MKL on an AMD
   CPU); bfloat16 oneDNN 1.00x at batch 8 and 0.992x at batch 32. So "auto" keeps XLA's dense
   matmuls there, where the step is already ahead of torch (RESULTS.md, session 35).
   The explicit attention core's six batched products (`auto_attention_products`) follow the dense
   layers' choice, except for bfloat16 on AMD CPUs with AVX-512 bf16 instructions
   (`cpu_has_avx512_bf16`; no AMX), where they take oneDNN's custom call (one CPU device, the extra
   installed). On the AMD EPYC host (session 40) one such product alone ran at 45-107 GFLOP/s by XLA
   (100-130 inside the trainer's step) and 105-366 by oneDNN (its [197, 197] and [197, 64] matrices
   are small for XLA's YNNPACK), the core's forward and backward pass alone 1.88x faster. The
   trainer's bfloat16 step of ViT-B/16 with huge pages on (the command lines' default;
   `benchmarks.matmul_library_step --libraries xla auto`, round-robin in one process) was 1.08x
   faster at batch 8 (one run; two scratch A/Bs before it: 1.12x and 1.10x) and 0.97x, 1.16x and
   1.05x at batch 32. Without huge pages the same scratch A/Bs at batch 8 showed no gain (1.017x),
   for reasons not known. Intel CPUs with AVX-512 bf16 but no AMX (Cooper Lake) keep XLA's:
   unmeasured, and on the Intel host oneDNN's products alone did not speed the step up (session 29).
   float32 products keep XLA's: oneDNN's made the float32 batch-8 step 1.027x faster (session 41,
   one in-process A/B), within this VM's spread.
   "onednn", "openblas" or "mkl" set by the user in a program compiled for other devices or
   exported: refused (`check_portable`).

Outside this module, one process setting: the command lines `python -m vit_jax.train` and
`vit_jax.infer` re-execute themselves with glibc's huge pages for XLA:CPU's per-step buffers
(`vit_jax.cli.huge_pages`; Linux, THP `madvise`), whatever the backend: a process setting, so
it cannot be chosen here, after the process has started.
"""

from __future__ import annotations

import dataclasses
import functools
import types
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp

from vit_jax.errors import ConfigError
from vit_jax.models import cblas_matmul, onednn_matmul

# The libraries whose matmuls run as CPU custom calls (item 5), and what a library resolves to.
CustomCallLibrary = Literal["onednn", "openblas", "mkl"]
ResolvedLibrary = Literal["xla", "onednn", "openblas", "mkl"]
CUSTOM_CALLS = {"onednn": onednn_matmul, "openblas": cblas_matmul.OPENBLAS, "mkl": cblas_matmul.MKL}
# How messages name them.
CUSTOM_CALL_NAMES = {"onednn": "oneDNN", "openblas": "OpenBLAS", "mkl": "MKL"}
# OpenBLAS's kernels ("cores") that "auto" takes OpenBLAS on for float32 (item 5), on Intel
# CPUs only: its AVX-512 ones, where its sgemm is SkylakeX's. OpenBLAS also runs them on AMD's
# AVX-512 CPUs (Zen 4 and later), where its step was not faster than XLA's (0.979x, item 5).
# Measured faster on "SkylakeX" (the Intel Xeon host) only.
OPENBLAS_AUTO_CORES = ("SkylakeX", "Cooperlake", "SapphireRapids")
# The x86 vendor strings of Intel's and AMD's CPUs (/proc/cpuinfo's vendor_id).
INTEL_VENDOR = "GenuineIntel"
AMD_VENDOR = "AuthenticAMD"

# Tokens per micro-batch of CPU inference; see item 2 above.
TOKENS_PER_MICRO_BATCH = 800
# The same with a custom call's matmuls (`matmul_library` one of `CUSTOM_CALLS`); item 2.
CUSTOM_CALL_TOKENS_PER_MICRO_BATCH = 4 * TOKENS_PER_MICRO_BATCH
# Bytes of one layer's MLP activation per training micro-batch and device on CPU; item 3.
TRAIN_ACTIVATION_BYTES = 10 * 2**20
# The same with a custom call's matmuls (`matmul_library` one of `CUSTOM_CALLS`); item 3.
CUSTOM_CALL_TRAIN_ACTIVATION_BYTES = 4 * TRAIN_ACTIVATION_BYTES


@dataclasses.dataclass(frozen=True)
class BackendChoices:
    """What the library does on one backend (see the module docstring for why)."""

    # The attention core "auto" compiles to: "explicit", "cudnn" (where it runs, else JAX's own
    # pick), or "xla": `jax.nn.dot_product_attention`, left to JAX (`auto_attention`).
    attention: Literal["explicit", "xla", "cudnn"]
    # Tokens per micro-batch of inference, or None for whole batches.
    micro_batch_tokens: int | None
    # Bytes of the MLP activation per training micro-batch and device, or None: whole batches.
    train_activation_bytes: int | None
    # What a low-precision model's matmuls return: "float32", or "compute" (its dtype); item 4.
    matmul_outputs: Literal["float32", "compute"]

    def inference_micro_batch_tokens(self, matmul_library: ResolvedLibrary = "xla") -> int | None:
        """Tokens per micro-batch of inference, or None for whole batches (item 2); with a
        custom call's matmuls (the resolved library), `CUSTOM_CALL_TOKENS_PER_MICRO_BATCH`."""
        if self.micro_batch_tokens is None:
            return None
        if matmul_library in CUSTOM_CALLS:
            return CUSTOM_CALL_TOKENS_PER_MICRO_BATCH
        return self.micro_batch_tokens

    def train_accum_steps(
        self,
        images: int,
        tokens_per_image: int,
        mlp_dim: int,
        itemsize: int,
        matmul_library: ResolvedLibrary = "xla",
    ) -> int:
        """Micro-batches per training step for `images` per device: the fewest that divide it
        and keep each micro-batch's MLP activation within `train_activation_bytes` (with a
        custom call's matmuls, `CUSTOM_CALL_TRAIN_ACTIVATION_BYTES`; item 3). `matmul_library`
        is the resolved library, not "auto" (`models.matmul.resolve_library`)."""
        if matmul_library not in ("xla", *CUSTOM_CALLS):
            raise ValueError(
                f"want a resolved matmul_library, 'xla' or one of {tuple(CUSTOM_CALLS)}; got "
                f"{matmul_library!r}"
            )
        if self.train_activation_bytes is None:
            return 1
        budget = self.train_activation_bytes
        if matmul_library in CUSTOM_CALLS:
            budget = CUSTOM_CALL_TRAIN_ACTIVATION_BYTES
        bytes_per_image = tokens_per_image * mlp_dim * itemsize  # One image's [N, mlp_dim].
        return next(
            (
                steps
                for steps in range(1, images + 1)
                if images % steps == 0 and images // steps * bytes_per_image <= budget
            ),
            max(images, 1),  # Even one image is over: one image per micro-batch.
        )


CPU = BackendChoices(
    attention="explicit",
    micro_batch_tokens=TOKENS_PER_MICRO_BATCH,
    train_activation_bytes=TRAIN_ACTIVATION_BYTES,
    matmul_outputs="float32",
)
# GPUs: cuDNN's flash attention where it runs (item 1), whole batches, compute-dtype matmul
# outputs (item 4).
GPU = BackendChoices(
    attention="cudnn",
    micro_batch_tokens=None,
    train_activation_bytes=None,
    matmul_outputs="compute",
)
# TPU and any other accelerator: JAX's defaults, nothing measured to beat them.
ACCELERATOR = BackendChoices(
    attention="xla", micro_batch_tokens=None, train_activation_bytes=None, matmul_outputs="float32"
)

# What `jax.export` calls the GPU platforms, as `Device.platform` names them.
GPU_PLATFORM_NAMES = {"cuda": "gpu", "rocm": "gpu"}

# cuDNN's fused attention: compute capability 8.0 (Ampere) or later, head_dim a multiple of 8
# up to 128 (jax 0.11's checks; Hopper with cuDNN >= 9.5 takes up to 256, not relied on here).
CUDNN_MIN_COMPUTE_CAPABILITY = 8.0
CUDNN_MAX_HEAD_DIM = 128


def for_platform(platform: str) -> BackendChoices:
    """The choices for `platform` as JAX names it ('cpu', 'gpu', 'tpu'; `Device.platform`)."""
    return {"cpu": CPU, "gpu": GPU}.get(platform, ACCELERATOR)


def for_default_backend() -> BackendChoices:
    """The choices for this process's default backend (`jax.default_backend()`)."""
    return for_platform(jax.default_backend())


def cudnn_attention_runs(device: Any, head_dim: int, dtype: Any) -> bool:
    """Whether cuDNN's fused attention takes `head_dim` in `dtype` on `device` (a `jax.Device`):
    an NVIDIA GPU of compute capability >= 8.0, bfloat16 or float16 compute. Others (older or
    AMD GPUs, whose `compute_capability` is missing or not a number), float32 and other head
    sizes take JAX's own attention."""
    try:
        capability = float(getattr(device, "compute_capability", ""))
    except (TypeError, ValueError):  # None, or an AMD name such as 'gfx90a'.
        return False
    return (
        capability >= CUDNN_MIN_COMPUTE_CAPABILITY
        and jnp.dtype(dtype) in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
        and head_dim % 8 == 0
        and head_dim <= CUDNN_MAX_HEAD_DIM
    )


def auto_attention(head_dim: int, dtype: Any) -> Literal["explicit", "cudnn"] | None:
    """The attention core that `implementation="auto"` runs in this process for heads of
    `head_dim` computed in `dtype`: "explicit", "cudnn", or None for
    `jax.nn.dot_product_attention`'s own pick (item 1)."""
    choice = for_default_backend().attention
    if choice == "cudnn" and not cudnn_attention_runs(jax.devices()[0], head_dim, dtype):
        return None
    return None if choice == "xla" else choice


def custom_call_unavailable(library: CustomCallLibrary, dtype: Any) -> str | None:
    """None where `matmul_library=library` (one of `CUSTOM_CALLS`) runs in this process for
    `dtype` compute, else why not: its custom call (`CUSTOM_CALLS`) runs on CPU only and needs
    its optional build and the library's matmul for the dtype on this CPU (item 5)."""
    backend = jax.default_backend()
    if backend != "cpu":
        name = CUSTOM_CALL_NAMES[library]
        return f"the default backend is {backend!r}; {name}'s custom call runs on CPU only"
    return CUSTOM_CALLS[library].unavailable(dtype)


def auto_matmul_library(dtype: Any) -> ResolvedLibrary:
    """The library that `matmul_library="auto"` runs in this process for `dtype` compute
    (item 5), in a process with one CPU device where its custom call is ready
    (`custom_call_unavailable`; a failed build falls back silently): "onednn" for bfloat16
    where oneDNN runs with AMX; for float32 on an Intel CPU with AVX-512, "mkl" where installed,
    else "openblas" where OpenBLAS runs one of `OPENBLAS_AUTO_CORES`; else "xla"."""
    if jax.device_count() > 1:
        return "xla"  # The custom calls have no partitioning rule: see item 5.
    if jnp.dtype(dtype) == jnp.bfloat16:
        if custom_call_unavailable("onednn", dtype) is None and onednn_matmul.uses_amx():
            return "onednn"
    elif jnp.dtype(dtype) == jnp.float32 and cpu_vendor() == INTEL_VENDOR:
        # MKL first (about 1.09x OpenBLAS in the step), on the CPUs OpenBLAS was measured on.
        if cpu_has_avx512() and custom_call_unavailable("mkl", dtype) is None:
            return "mkl"
        if custom_call_unavailable("openblas", dtype) is None:
            if cblas_matmul.OPENBLAS.describe() in OPENBLAS_AUTO_CORES:
                return "openblas"
    return "xla"


def auto_attention_products(dtype: Any) -> ResolvedLibrary:
    """The library that runs the explicit attention core's batched products under
    `matmul_library="auto"` (item 5): `auto_matmul_library`'s, except that bfloat16 takes oneDNN's
    custom call also without AMX on AMD CPUs with AVX-512 bf16 instructions (`cpu_has_avx512_bf16`:
    Zen 4 and later, where it was measured), in a process with one CPU device where it is ready.
    Intel CPUs keep the dense layers' choice: there, oneDNN's products without its dense matmuls
    were not faster (session 29)."""
    library = auto_matmul_library(dtype)
    if library != "xla" or jax.device_count() > 1 or jnp.dtype(dtype) != jnp.bfloat16:
        return library
    if cpu_vendor() == AMD_VENDOR and cpu_has_avx512_bf16():
        if custom_call_unavailable("onednn", dtype) is None:
            return "onednn"
    return "xla"


@functools.cache
def _first_cpu_fields() -> Mapping[str, str]:
    """The fields of the first CPU in /proc/cpuinfo ("vendor_id", "flags", ...), read once; empty
    where it cannot be read (not Linux: /proc/cpuinfo is Linux's)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if not line.strip():
                    break  # The first CPU's block ends at the first blank line.
                name, _, value = line.partition(":")
                fields[name.strip()] = value.strip()
    except OSError:
        pass
    return types.MappingProxyType(fields)  # Cached: read-only for every caller.


def cpu_vendor() -> str:
    """This CPU's vendor string ("GenuineIntel", "AuthenticAMD"), or "" where it cannot be read."""
    return _first_cpu_fields().get("vendor_id", "")


def _cpu_has_flag(flag: str) -> bool:
    """Whether /proc/cpuinfo lists `flag` for the first CPU (False where it cannot be read)."""
    return flag in _first_cpu_fields().get("flags", "").split()


def cpu_has_avx512() -> bool:
    """Whether this CPU has AVX-512 (its foundation, `avx512f`), as far as it can be read."""
    return _cpu_has_flag("avx512f")


def cpu_has_avx512_bf16() -> bool:
    """Whether this CPU has AVX-512's bfloat16 instructions (`avx512_bf16`: AMD Zen 4 and later,
    Intel Cooper Lake and Sapphire Rapids and later), as far as it can be read."""
    return _cpu_has_flag("avx512_bf16")


def attention_compiled_for(platforms: Sequence[str]) -> Literal["explicit", "xla"]:
    """The attention core that "auto" becomes in a program compiled for `platforms` ('cpu',
    'gpu' or 'cuda', 'tpu', ...) rather than for this process's own devices: the trainer
    planning a TPU step on a CPU host, or an exported model. It must lower for every one of
    them, and cannot depend on a device this host does not have: "explicit" where a CPU is
    among them (measured faster there, and plain XLA operations on any other platform), else
    "xla" (also for GPUs: whether one runs cuDNN's attention cannot be seen from here)."""
    return "explicit" if "cpu" in platforms else "xla"


def matmul_outputs_compiled_for(platforms: Sequence[str]) -> Literal["float32", "compute"]:
    """What "auto" matmul outputs become in a program compiled for `platforms` ('cpu', 'gpu',
    'cuda', 'rocm', 'tpu', ...) rather than for this process's own devices (item 4): their
    choice where every one makes the same, else "float32" (the CPU's and TPU's)."""
    choices = {for_platform(GPU_PLATFORM_NAMES.get(p, p)).matmul_outputs for p in platforms}
    return choices.pop() if len(choices) == 1 else "float32"


def check_portable(matmul_library: str, platforms: Sequence[str]) -> None:
    """Raises a ConfigError for a custom call's `matmul_library` (`CUSTOM_CALLS`) in a program
    compiled for `platforms` or exported: a custom call exists only in the CPU process that built
    it."""
    if matmul_library in CUSTOM_CALLS:
        raise ConfigError(
            f"matmul_library {matmul_library!r} ({CUSTOM_CALL_NAMES[matmul_library]}'s custom "
            f"call, built in this process on CPU) cannot be compiled for {list(platforms)} or "
            "exported; set model.matmul_library to 'xla' (the same model with XLA's matmuls)."
        )


def model_fields_compiled_for(fields: Mapping[str, Any], platforms: Sequence[str]) -> dict:
    """The model fields among `fields` (a model config, or a model's own attributes) that are
    "auto" (or missing: the model's default is "auto") and depend on the devices, resolved for a
    program compiled for `platforms`: `attention_implementation` (`attention_compiled_for`),
    `matmul_outputs` (`matmul_outputs_compiled_for`) and `matmul_library` ("xla", item 5). Fields
    set to anything else are the user's and kept, except a custom call's `matmul_library`
    (`CUSTOM_CALLS`): a custom call exists only in a CPU process that built it, so a program
    compiled for other devices or exported cannot contain it (a ConfigError).
    """
    check_portable(fields.get("matmul_library", "auto"), platforms)
    resolved = {
        "attention_implementation": attention_compiled_for(platforms),
        "matmul_outputs": matmul_outputs_compiled_for(platforms),
        "matmul_library": "xla",
    }
    return {name: value for name, value in resolved.items() if fields.get(name, "auto") == "auto"}
