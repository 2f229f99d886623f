"""`python -m vit_jax.export`: the artifact runs with JAX alone, at any batch size, and gives
our logits."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.models import tiny as tiny_models
from vit_jax import export
from vit_jax.convert import export as exporter
from vit_jax.errors import ConfigError

# Runs in a fresh interpreter that never imports vit_jax: deserialise, call at batch 1 and 3.
_RUN_WITHOUT_VIT_JAX = textwrap.dedent(
    """
    import sys
    import jax, numpy as np
    for artifact, images, out in zip(sys.argv[1::3], sys.argv[2::3], sys.argv[3::3]):
        exported = jax.export.deserialize(bytearray(open(artifact, 'rb').read()))
        x = np.load(images)
        np.save(out, np.concatenate([exported.call(x[:1]), exported.call(x[1:])]))
    assert not any(name.startswith('vit_jax') for name in sys.modules)
    """
)


@pytest.fixture(scope="module")
def artifacts(tiny_checkpoints, tmp_path_factory):
    directory = tmp_path_factory.mktemp("export")
    made = {}
    for name in ("token",):  # jax.export treats every model alike; the hybrid adds only time.
        tiny = tiny_checkpoints(name)
        out = str(directory / f"{name}.jax.bin")
        assert export.main([tiny.npz, out, "--platforms", "cpu,cuda"]) == 0
        images = tiny_models.random_images(tiny.images.shape[1], batch=4, seed=7)
        np.save(directory / f"{name}_images.npy", images)
        made[name] = (tiny, out, images)
    return directory, made


def test_artifact_runs_without_our_code_at_any_batch_size(artifacts):
    directory, made = artifacts
    argv = []
    for name, (_, out, _) in made.items():
        argv += [out, str(directory / f"{name}_images.npy"), str(directory / f"{name}_out.npy")]
    subprocess.run([sys.executable, "-c", _RUN_WITHOUT_VIT_JAX, *argv], check=True)
    for name, (tiny, _, images) in made.items():
        model, _ = tiny_models.build(name, num_classes=5)
        ours = np.asarray(model.apply({"params": tiny.params}, images))
        np.testing.assert_allclose(np.load(directory / f"{name}_out.npy"), ours, atol=1e-5)


def test_signature_and_info(artifacts):
    _, made = artifacts
    _, out, _ = made["token"]
    exported = exporter.load(out)
    assert str(exported.in_avals[0].shape[0]) == "b"
    assert exported.in_avals[0].shape[1:] == (16, 16, 3)
    assert exported.platforms == ("cpu", "cuda")
    with open(out + ".json") as f:
        info = json.load(f)
    assert info["input"]["shape"] == ["batch", 16, 16, 3]
    assert info["input"]["value_range"] == [-1.0, 1.0]
    assert info["output"]["shape"] == ["batch", 5]


def test_params_as_input(tiny_checkpoints, tmp_path):
    tiny = tiny_checkpoints("gap")
    out = str(tmp_path / "gap.jax.bin")
    written = exporter.export_checkpoint(tiny.npz, out, platforms=("cpu",), params_as_input=True)
    assert written == [out, out + ".params.npz", out + ".json"]
    exported = exporter.load(out)
    params = dict(np.load(out + ".params.npz"))
    np.testing.assert_allclose(exported.call(params, tiny.images), tiny.logits, atol=1e-5)
    assert jax.tree.structure(params) == exported.in_tree.children()[0].children()[0]


def test_export_lowers_for_every_platform_whatever_auto_picks_on_this_host(
    tiny_checkpoints, monkeypatch
):
    """On a GPU host "auto" runs cuDNN's attention, which lowers for NVIDIA GPUs only; an
    export for several platforms must not take it (`backend_tuning.attention_compiled_for`)."""
    from vit_jax.models import backend_tuning

    monkeypatch.setattr(backend_tuning, "auto_attention", lambda head_dim, dtype: "cudnn")
    tiny = tiny_checkpoints("token")
    config, image_size = tiny_models.TINY_CONFIGS["token"]
    exported = exporter.export_model(
        tiny.params, config, 5, (image_size, image_size), platforms=("cpu", "cuda", "tpu")
    )
    assert exported.platforms == ("cpu", "cuda", "tpu")
    np.testing.assert_allclose(exported.call(tiny.images), tiny.logits, atol=1e-5)


def test_export_refuses_onednn_matmuls_before_building_them(tiny_checkpoints, monkeypatch):
    """`matmul_library="onednn"` cannot be exported (its custom call lives in this process
    only): refused by name, before the model is built (which would build the custom call)."""
    from vit_jax.models import onednn_matmul

    monkeypatch.setattr(onednn_matmul, "load", lambda: pytest.fail("built the custom call"))
    tiny = tiny_checkpoints("token")
    config, image_size = tiny_models.TINY_CONFIGS["token"]
    config = {**config, "matmul_library": "onednn"}
    with pytest.raises(ConfigError, match=r"'onednn'.*cannot be compiled for.*or exported"):
        exporter.export_model(tiny.params, config, 5, (image_size, image_size))


def test_export_runs_xla_matmuls_where_this_host_would_pick_onednn(tiny_checkpoints, monkeypatch):
    """A host where "auto" takes oneDNN (bfloat16 on a CPU with AMX): its export is the
    portable one all the same, with XLA's matmuls and no custom call."""
    from vit_jax.models import backend_tuning, onednn_matmul

    monkeypatch.setattr(backend_tuning, "auto_matmul_library", lambda dtype: "onednn")
    tiny = tiny_checkpoints("token")
    config, image_size = tiny_models.TINY_CONFIGS["token"]
    config = {**config, "dtype": jnp.bfloat16}  # No matmul_library: the model's "auto".
    exported = exporter.export_model(tiny.params, config, 5, (image_size, image_size))
    module = exported.mlir_module()
    assert onednn_matmul.TARGET not in module
    assert len(re.findall(r"stablehlo\.dot_general", module)) >= WEIGHT_MATMULS


# Weight matmuls of the tiny 'token' model: patch embedding, 2 layers of q/k/v (the last
# block's query apart), out and 2 MLP, and the head.
WEIGHT_MATMULS = 1 + 4 + 5 + 1


@pytest.mark.parametrize(
    "platforms, bf16", [(("cpu", "cuda", "tpu"), 0), (("cuda",), WEIGHT_MATMULS)]
)
def test_export_takes_the_matmul_outputs_of_its_platforms_not_the_hosts(
    tiny_checkpoints, monkeypatch, platforms, bf16
):
    """A GPU host's "auto" matmul outputs are bfloat16; an export takes the choice of the
    platforms it is for (`backend_tuning.matmul_outputs_compiled_for`): float32 unless every
    one is a GPU (whose program then also keeps the attention's logits float32)."""
    from vit_jax.models import backend_tuning

    monkeypatch.setattr(backend_tuning, "for_default_backend", lambda: backend_tuning.GPU)
    tiny = tiny_checkpoints("token")
    config, image_size = tiny_models.TINY_CONFIGS["token"]
    config = {**config, "dtype": jnp.bfloat16}
    exported = exporter.export_model(
        tiny.params, config, 5, (image_size, image_size), platforms=platforms
    )
    module = exported.mlir_module()
    results = re.findall(r"stablehlo\.dot_general.*-> tensor<[^>]*x(bf16|f32)>", module)
    assert len(results) >= WEIGHT_MATMULS and results.count("bf16") >= bf16, results
    if not bf16:
        assert set(results) == {"f32"}, results


def test_user_errors_exit_2(tmp_path, capsys):
    assert export.main([str(tmp_path / "missing.npz"), str(tmp_path / "x")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert export.main(["a.npz", str(tmp_path / "x"), "--platforms", "gpu"]) == 2
    assert "unknown platforms ['gpu']" in capsys.readouterr().err
