"""The per-backend choices are the ones `backend_tuning`'s docstring states and measures."""

import types

import jax
import jax.numpy as jnp
import pytest

from vit_jax import models
from vit_jax.errors import ConfigError
from vit_jax.models import backend_tuning


def test_cpu_runs_explicit_attention_and_cache_sized_micro_batches():
    choices = backend_tuning.for_platform("cpu")
    assert choices == backend_tuning.BackendChoices(
        attention="explicit",
        micro_batch_tokens=800,
        train_activation_bytes=10 * 2**20,
        matmul_outputs="float32",
    )
    assert backend_tuning.TOKENS_PER_MICRO_BATCH == 800
    assert backend_tuning.TRAIN_ACTIVATION_BYTES == 10 * 2**20


# (images per device, tokens per image, mlp_dim, bytes per value) -> micro-batches on CPU.
B16_224 = (197, 3072)  # ViT-B/16 at 224 px.
TRAINING_SPLITS = [
    ((32, *B16_224, 4), 8),  # float32: micro-batches of 4 images (9.7 MB each).
    ((8, *B16_224, 4), 2),
    ((4, *B16_224, 4), 1),
    ((32, *B16_224, 2), 4),  # 2-byte values: 8 fit (the trainer passes at least 4).
    ((24, *B16_224, 4), 6),  # The fewest divisors that fit: 6 x 4.
    ((10, *B16_224, 4), 5),  # 5 does not fit (12.1 MB): 5 x 2.
    ((11, *B16_224, 4), 11),  # 11 is prime: one image at a time.
    ((2, 577, 16384, 4), 2),  # One image over the budget alone: still one at a time.
    ((128, 17, 128, 4), 1),  # configs/digits.py: never split.
]


@pytest.mark.parametrize("shape, steps", TRAINING_SPLITS)
def test_cpu_training_splits_batches_whose_activations_overflow_the_budget(shape, steps):
    images, tokens, mlp_dim, itemsize = shape
    choice = backend_tuning.CPU.train_accum_steps(images, tokens, mlp_dim, itemsize)
    assert choice == steps
    assert images % choice == 0


@pytest.mark.parametrize("library", list(backend_tuning.CUSTOM_CALLS))
def test_cpu_training_with_custom_call_matmuls_takes_larger_micro_batches(library):
    """The custom calls' matmuls gain from more rows per call: a 40 MiB budget, 16 ViT-B/16
    images."""
    cpu = backend_tuning.CPU
    assert cpu.train_accum_steps(32, *B16_224, 4) == 8
    assert cpu.train_accum_steps(32, *B16_224, 4, matmul_library=library) == 2
    assert cpu.train_accum_steps(8, *B16_224, 4, matmul_library=library) == 1


@pytest.mark.parametrize("platform", ["tpu", "gpu"])
def test_accelerators_train_whole_batches(platform):
    choices = backend_tuning.for_platform(platform)
    assert choices.train_accum_steps(32, *B16_224, 4) == 1


def test_tpus_keep_jax_defaults():
    assert backend_tuning.for_platform("tpu") == backend_tuning.BackendChoices(
        attention="xla",
        micro_batch_tokens=None,
        train_activation_bytes=None,
        matmul_outputs="float32",
    )


def test_gpus_run_cudnn_attention_and_compute_dtype_matmuls_on_whole_batches():
    assert backend_tuning.for_platform("gpu") == backend_tuning.BackendChoices(
        attention="cudnn",
        micro_batch_tokens=None,
        train_activation_bytes=None,
        matmul_outputs="compute",
    )


def _gpu(capability):
    """A stand-in for a `jax.Device`: only `compute_capability` is read (absent when None)."""
    return types.SimpleNamespace(compute_capability=capability) if capability else object()


BF16, F16, F32 = jnp.bfloat16, jnp.float16, jnp.float32


@pytest.mark.parametrize(
    "capability, head_dim, dtype, runs",
    [
        ("9.0", 64, BF16, True),  # H100/H200, ViT-B and L.
        ("8.0", 80, BF16, True),  # A100, ViT-H/14.
        ("8.6", 128, F16, True),
        ("9.0", 64, F32, False),  # cuDNN's attention takes 16-bit inputs only.
        ("9.0", 12, BF16, False),  # Not a multiple of 8.
        ("9.0", 256, BF16, False),  # Over 128.
        ("7.5", 64, BF16, False),  # T4: before Ampere.
        ("gfx90a", 64, BF16, False),  # An AMD GPU's name for its architecture.
        (None, 64, BF16, False),  # No compute capability at all.
    ],
)
def test_cudnn_attention_runs_only_where_cudnn_takes_it(capability, head_dim, dtype, runs):
    assert backend_tuning.cudnn_attention_runs(_gpu(capability), head_dim, dtype) is runs


@pytest.mark.parametrize(
    "platform, capability, head_dim, dtype, want",
    [
        ("cpu", None, 64, BF16, "explicit"),
        ("gpu", "9.0", 64, BF16, "cudnn"),
        ("gpu", "9.0", 64, F32, None),  # JAX's own attention where cuDNN's does not run.
        ("gpu", "9.0", 12, BF16, None),
        ("gpu", "7.5", 64, BF16, None),
        ("tpu", None, 64, BF16, None),
    ],
)
def test_auto_attention_is_the_backends_choice_where_it_runs(
    monkeypatch, platform, capability, head_dim, dtype, want
):
    monkeypatch.setattr(jax, "default_backend", lambda: platform)
    monkeypatch.setattr(jax, "devices", lambda: [_gpu(capability)])
    assert backend_tuning.auto_attention(head_dim, dtype) == want


@pytest.mark.parametrize(
    "platforms, want",
    [
        (["cpu"], "explicit"),
        (["tpu"], "xla"),
        (["gpu"], "xla"),  # Not "cudnn": whether that GPU runs it cannot be seen from here.
        (["cpu", "cuda", "tpu"], "explicit"),  # Plain XLA operations: lowers for each.
        (["cuda", "tpu"], "xla"),
    ],
)
def test_programs_for_other_devices_compile_a_portable_attention(platforms, want):
    assert backend_tuning.attention_compiled_for(platforms) == want


@pytest.mark.parametrize("library", list(backend_tuning.CUSTOM_CALLS))
@pytest.mark.parametrize("platforms", [["cpu"], ["tpu"], ["cpu", "cuda"]])
def test_custom_call_matmuls_are_never_compiled_for_other_devices(library, platforms):
    """A custom call exists only in the CPU process that built it: a plan or an export with
    one is refused by name, before anything is lowered."""
    fields = {
        "attention_implementation": "auto",
        "matmul_outputs": "auto",
        "matmul_library": library,
    }
    with pytest.raises(ConfigError, match=rf"'{library}'.*cannot be compiled for"):
        backend_tuning.model_fields_compiled_for(fields, platforms)


def test_programs_for_other_devices_run_xla_matmuls_for_auto():
    """ "auto" (or unset: the model's default) becomes XLA's matmuls, whatever this host picks;
    the user's "xla" is kept."""
    fields = {"attention_implementation": "xla", "matmul_outputs": "float32"}
    unset = backend_tuning.model_fields_compiled_for(fields, ["tpu"])
    assert unset == {"matmul_library": "xla"}
    auto = backend_tuning.model_fields_compiled_for({**fields, "matmul_library": "auto"}, ["tpu"])
    assert auto == {"matmul_library": "xla"}
    kept = backend_tuning.model_fields_compiled_for({**fields, "matmul_library": "xla"}, ["cpu"])
    assert kept == {}


INTEL, AMD = "GenuineIntel", "AuthenticAMD"
NO_MKL = "MKL is not installed (a test)"


@pytest.mark.parametrize(
    "dtype, unavailable, mkl, amx, core, vendor, avx512, want",
    [
        (jnp.bfloat16, None, None, True, "SkylakeX", INTEL, True, "onednn"),  # MKL: f32 only.
        (jnp.bfloat16, None, NO_MKL, False, "SkylakeX", INTEL, True, "xla"),  # No AMX: unmeasured.
        (jnp.bfloat16, "no g++ on PATH", NO_MKL, True, "SkylakeX", INTEL, True, "xla"),  # No error.
        (jnp.float32, None, None, True, "SkylakeX", INTEL, True, "mkl"),  # MKL before OpenBLAS.
        (jnp.float32, None, None, True, "Haswell", INTEL, False, "xla"),  # AVX2: unmeasured.
        (jnp.float32, None, None, True, "SkylakeX", AMD, True, "xla"),  # Zen 4: unmeasured.
        (jnp.float32, None, NO_MKL, True, "SkylakeX", INTEL, True, "openblas"),  # oneDNN's f32:
        (jnp.float32, None, NO_MKL, True, "SapphireRapids", INTEL, True, "openblas"),  # slower.
        (jnp.float32, None, NO_MKL, True, "Haswell", INTEL, False, "xla"),
        (jnp.float32, None, NO_MKL, True, "SkylakeX", AMD, True, "xla"),
        (jnp.float32, "no g++ on PATH", "no g++ on PATH", True, "SkylakeX", INTEL, True, "xla"),
        (jnp.float16, None, None, True, "SkylakeX", INTEL, True, "xla"),
    ],
)
def test_auto_matmul_library_takes_onednn_for_bfloat16_with_amx_and_mkl_or_openblas_for_float32(
    monkeypatch, dtype, unavailable, mkl, amx, core, vendor, avx512, want
):
    from vit_jax.models import cblas_matmul, onednn_matmul

    monkeypatch.setattr(backend_tuning, "cpu_vendor", lambda: vendor)
    monkeypatch.setattr(backend_tuning, "cpu_has_avx512", lambda: avx512)
    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
    monkeypatch.setattr(jax, "device_count", lambda: 1)
    for library in (onednn_matmul, cblas_matmul.OPENBLAS):
        monkeypatch.setattr(library, "unavailable", lambda dtype: unavailable)
    monkeypatch.setattr(cblas_matmul.MKL, "unavailable", lambda dtype: mkl)
    monkeypatch.setattr(onednn_matmul, "uses_amx", lambda: amx)
    monkeypatch.setattr(cblas_matmul.OPENBLAS, "describe", lambda: core)
    assert backend_tuning.auto_matmul_library(dtype) == want
    # Several devices: the custom call has no partitioning rule, so XLA's matmuls.
    monkeypatch.setattr(jax, "device_count", lambda: 8)
    assert backend_tuning.auto_matmul_library(dtype) == "xla"
    monkeypatch.setattr(jax, "device_count", lambda: 1)
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert backend_tuning.auto_matmul_library(dtype) == "xla"


@pytest.mark.parametrize(
    "dtype, vendor, avx512_bf16, amx, unavailable, devices, want",
    [
        (jnp.bfloat16, AMD, True, False, None, 1, "onednn"),  # Zen 4: the products only (measured).
        (jnp.bfloat16, INTEL, True, True, None, 1, "onednn"),  # AMX: every matmul, as before.
        (jnp.bfloat16, INTEL, True, False, None, 1, "xla"),  # Cooper Lake: unmeasured.
        (jnp.bfloat16, AMD, False, False, None, 1, "xla"),  # No bf16 instructions (Zen 3).
        (jnp.bfloat16, AMD, True, False, "no g++ on PATH", 1, "xla"),  # Not built: no error.
        (jnp.bfloat16, AMD, True, False, None, 8, "xla"),  # No partitioning rule.
        (jnp.float32, AMD, True, False, None, 1, "xla"),  # oneDNN's float32: not measured.
        (jnp.float16, AMD, True, False, None, 1, "xla"),
    ],
)
def test_auto_attention_products_take_onednn_for_bfloat16_on_amd_avx512_bf16(
    monkeypatch, dtype, vendor, avx512_bf16, amx, unavailable, devices, want
):
    from vit_jax.models import cblas_matmul, matmul, onednn_matmul

    monkeypatch.setattr(backend_tuning, "cpu_vendor", lambda: vendor)
    monkeypatch.setattr(backend_tuning, "cpu_has_avx512", lambda: True)
    monkeypatch.setattr(backend_tuning, "cpu_has_avx512_bf16", lambda: avx512_bf16)
    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
    monkeypatch.setattr(jax, "device_count", lambda: devices)
    monkeypatch.setattr(onednn_matmul, "unavailable", lambda dtype: unavailable)
    monkeypatch.setattr(onednn_matmul, "uses_amx", lambda: amx and unavailable is None)
    monkeypatch.setattr(cblas_matmul.MKL, "unavailable", lambda dtype: NO_MKL)
    monkeypatch.setattr(cblas_matmul.OPENBLAS, "unavailable", lambda dtype: NO_MKL)
    assert backend_tuning.auto_attention_products(dtype) == want
    assert matmul.resolve_attention_products("auto", dtype) == want
    # The dense layers keep their own choice: oneDNN only with AMX.
    dense = "onednn" if (amx and dtype == jnp.bfloat16 and devices == 1) else "xla"
    assert matmul.resolve_library("auto", dtype) == dense
    for library in ("xla", "onednn"):  # A library the user names is kept.
        assert matmul.resolve_attention_products(library, dtype) == library
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert backend_tuning.auto_attention_products(dtype) == "xla"


def test_cpu_features_are_read_from_proc_cpuinfo():
    """What "auto" reads of the CPU: this host's vendor and flags, "" and False where unread
    (no /proc/cpuinfo, or no vendor_id in it, as on ARM)."""
    try:
        with open("/proc/cpuinfo") as info:
            text = info.read()
    except OSError:
        assert (backend_tuning.cpu_vendor(), backend_tuning.cpu_has_avx512()) == ("", False)
        assert not backend_tuning.cpu_has_avx512_bf16()
        return
    if "vendor_id" in text:
        assert backend_tuning.cpu_vendor() in text and backend_tuning.cpu_vendor() != ""
    else:
        assert backend_tuning.cpu_vendor() == ""
    assert backend_tuning.cpu_has_avx512() == (" avx512f " in text.replace("\n", " "))
    assert backend_tuning.cpu_has_avx512_bf16() == (" avx512_bf16 " in text.replace("\n", " "))


def test_only_the_first_cpus_fields_are_read(monkeypatch, tmp_path):
    """The first CPU's block of /proc/cpuinfo, up to its blank line; a line without ":" is kept
    as an empty field, not an error; later CPUs' values are not read."""
    import builtins

    fake = tmp_path / "cpuinfo"
    fake.write_text(
        "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu avx512f sse\nodd line\n\n"
        "processor\t: 1\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu avx512_bf16\n"
    )
    real_open = builtins.open
    redirect = lambda path, *args, **kwargs: real_open(
        fake if path == "/proc/cpuinfo" else path, *args, **kwargs
    )
    backend_tuning._first_cpu_fields.cache_clear()
    try:
        with monkeypatch.context() as patched:
            patched.setattr(builtins, "open", redirect)
            fields = backend_tuning._first_cpu_fields()
            assert (backend_tuning.cpu_vendor(), backend_tuning.cpu_has_avx512()) == (
                "GenuineIntel",
                True,
            )
            assert not backend_tuning.cpu_has_avx512_bf16()  # The second CPU's flag is not read.
        assert fields == {
            "processor": "0",
            "vendor_id": "GenuineIntel",
            "flags": "fpu avx512f sse",
            "odd line": "",
        }
        with pytest.raises(TypeError):  # Cached and shared: read-only.
            fields["vendor_id"] = "AuthenticAMD"
    finally:
        backend_tuning._first_cpu_fields.cache_clear()  # This host's own, next time.


@pytest.mark.parametrize(
    "platforms, want",
    [
        (["cpu"], "float32"),
        (["tpu"], "float32"),
        (["gpu"], "compute"),
        (["cuda"], "compute"),
        (["cuda", "rocm"], "compute"),
        (["cpu", "cuda", "tpu"], "float32"),  # One program for all: the CPU's and TPU's.
        (["cuda", "tpu"], "float32"),
        ([], "float32"),
    ],
)
def test_programs_for_other_devices_take_gpu_matmul_outputs_only_for_gpus(platforms, want):
    assert backend_tuning.matmul_outputs_compiled_for(platforms) == want


def test_docstring_states_every_choice():
    doc = backend_tuning.__doc__
    assert "TOKENS_PER_MICRO_BATCH` = 800" in doc
    assert "`TRAIN_ACTIVATION_BYTES` = 10 MiB" in doc
    assert doc.count("TPU and GPU:") == 2  # Items 2 and 3: what accelerators get.
    assert 'GPU: "cudnn"' in doc and "TPU (and other accelerators):" in doc  # Item 1.
    assert 'CPU: "float32"' in doc and 'GPU: "compute"' in doc  # Item 4.
    assert 'TPU (and other accelerators): "float32"' in doc
    assert "benchmarks/RESULTS.md" in doc


def test_this_process_asks_its_default_backend(monkeypatch):
    assert backend_tuning.for_default_backend() == backend_tuning.CPU
    monkeypatch.setattr(jax, "default_backend", lambda: "tpu")
    assert backend_tuning.for_default_backend() == backend_tuning.ACCELERATOR
    assert models.micro_batch_size(197) is None
