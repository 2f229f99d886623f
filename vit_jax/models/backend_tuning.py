"""Every choice the library makes by backend (CPU, GPU, TPU), and the measurement behind it.

Nothing else in vit_jax branches on the backend: the attention core (`models.attention`), the
micro-batched inference (`models.micro_batch`) and the trainer (`training.trainer`, which asks
for the platform of its mesh's devices, e.g. 'tpu' when compiling a TPU program on a CPU host)
all ask `for_platform`. Every output is the same within float tolerance whichever choice is
made (tested); only speed differs.

Measured on one machine only: a 2-core AMD EPYC VM with AVX-512 (bf16) and a 32 MiB L3,
jax/jaxlib 0.10.2, float32 unless said (benchmarks/RESULTS.md, "Session 2: micro-batched
inference" and "What changed in the library"). Nothing here has been measured on a GPU or a
TPU (RESULTS.md, "GPU": no GPU was lent), so those get JAX's own defaults.

1. The attention core that `attention_implementation="auto"` runs.
   CPU: "explicit", a softmax attention with q, k and v laid out [B, H, N, K]. On ViT-B/16
   shapes at batch 8, the attention core alone took 14 ms, against 20 ms for
   `jax.nn.dot_product_attention` (XLA path) and 58 ms for einsums over [B, N, H, K]. Its
   bfloat16 gradient is hand-written (`models.attention_core`: 2.2x faster than JAX's).
   TPU and GPU: `jax.nn.dot_product_attention`. In a process whose default backend is that
   accelerator the model passes `implementation=None` (JAX's pick, which in jax 0.10.2 is
   its XLA path); when the trainer compiles for it from another host (`python -m
   vit_jax.plan` on a CPU) it asks for "xla", so that the host's choice is not compiled in.
   "cudnn" (flash attention on NVIDIA GPUs) is never picked automatically: set
   `model.attention_implementation=cudnn`.

2. Micro-batched inference (`models.micro_batched_apply` with `micro_batch="auto"`; the
   predictor and the trainer's evaluation). Never used under `jax.grad`: a ViT-B/16 training
   step at batch 8 ran at 63% of the matmul peak in micro-batches, 76% without.
   CPU: micro-batches of `TOKENS_PER_MICRO_BATCH` = 800 tokens (images x tokens per image):
   4 images of 197 tokens at 224 px, 1 image of 577 at 384 px. A whole ViT-B/16 batch of 32
   at 224 px overflows the L3 (77 MB of MLP activations per layer): its forward pass ran at
   66.8% of the matmul peak, micro-batches of 4 at 88.2% (1.32x; ViT-Ti/16 60.4% -> 71.5%,
   1.18x). The best micro-batches were 4-8 images at 224 px and 1-2 at 384 px.
   TPU and GPU: whole batches.

3. Training micro-batches (`config.accum_steps` left unset: the trainer's gradient
   accumulation, `BackendChoices.train_accum_steps`). The same cache limit holds under
   `jax.grad`, but there the batch is split by accumulating the gradients of micro-batches
   (one forward and backward pass each), not by a loop inside the model.
   CPU: the fewest micro-batches for which one layer's widest activation, the MLP's hidden
   layer (images x tokens x mlp_dim x 4 bytes per device: the layer's matmul returns float32
   also for bfloat16 compute), stays within `TRAIN_ACTIVATION_BYTES` = 10 MiB: ViT-B/16 at
   224 px trains in micro-batches of 4 images (9.7 MB), in float32 and in bfloat16; the
   digits model (17 tokens, width 128) never splits. Measured on the trainer's step (RESULTS.md,
   "Class token only in the last block; micro-batches of 4 images"), img/s by images per
   micro-batch:
   float32 batch 8: 1.62-1.65 (8), 1.70-1.74 (4), 1.74-1.76 (2); bfloat16 batch 8: 2.62-2.71
   (8), 2.83-2.84 (4); float32 batch 32: 1.70-1.81 (8), 1.82-1.86 (4); bfloat16 batch 32:
   3.00-3.09 (8), 3.15-3.18 (4), 3.16 (2). 2 images were within noise of 4, so the larger is
   kept. Earlier, at batch 32, 16 images per micro-batch were slower still (float32 1.46,
   bfloat16 2.41) and one piece slowest (1.22 and 2.07). Measured for ViT-B/16 at 224 px
   only; other shapes follow the same byte budget unmeasured (B/16 at 384 px: 1 image, L/16
   at 224 px: 3).
   TPU and GPU: whole batches (one micro-batch).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax

# Tokens per micro-batch of CPU inference; see item 2 above.
TOKENS_PER_MICRO_BATCH = 800
# Bytes of one layer's MLP activation per training micro-batch and device on CPU; item 3.
TRAIN_ACTIVATION_BYTES = 10 * 2**20


@dataclasses.dataclass(frozen=True)
class BackendChoices:
    """What the library does on one backend (see the module docstring for why)."""

    # The attention core "auto" compiles to: "explicit", or `jax.nn.dot_product_attention`
    # ("xla" names it when compiling for another platform than the process's own).
    attention: Literal["explicit", "xla"]
    # Tokens per micro-batch of inference, or None for whole batches.
    micro_batch_tokens: int | None
    # Bytes of the MLP activation per training micro-batch and device, or None: whole batches.
    train_activation_bytes: int | None

    def train_accum_steps(
        self, images: int, tokens_per_image: int, mlp_dim: int, itemsize: int
    ) -> int:
        """Micro-batches per training step for `images` per device: the fewest that divide it
        and keep each micro-batch's MLP activation within `train_activation_bytes`."""
        if self.train_activation_bytes is None:
            return 1
        bytes_per_image = tokens_per_image * mlp_dim * itemsize  # One image's [N, mlp_dim].
        return next(
            (
                steps
                for steps in range(1, images + 1)
                if images % steps == 0
                and images // steps * bytes_per_image <= self.train_activation_bytes
            ),
            max(images, 1),  # Even one image is over: one image per micro-batch.
        )


CPU = BackendChoices(
    attention="explicit",
    micro_batch_tokens=TOKENS_PER_MICRO_BATCH,
    train_activation_bytes=TRAIN_ACTIVATION_BYTES,
)
# TPU, GPU and any other accelerator: JAX's defaults, nothing measured to beat them.
ACCELERATOR = BackendChoices(attention="xla", micro_batch_tokens=None, train_activation_bytes=None)


def for_platform(platform: str) -> BackendChoices:
    """The choices for `platform` as JAX names it ('cpu', 'gpu', 'tpu'; `Device.platform`)."""
    return CPU if platform == "cpu" else ACCELERATOR


def for_default_backend() -> BackendChoices:
    """The choices for this process's default backend (`jax.default_backend()`)."""
    return for_platform(jax.default_backend())
