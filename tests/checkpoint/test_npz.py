"""`.npz` save/load: bit-identical round trips in both layouts, and every kind of bad file."""

import os
import pickle

import ml_dtypes
import numpy as np
import pytest

from tests.checkpoint.tiny import assert_trees_identical
from vit_jax.checkpoint import CheckpointError, layout, load, save
from vit_jax.models import stack_encoder_blocks

QUERY = "Transformer/encoderblock_0/MultiHeadDotProductAttention_1/query/kernel"


@pytest.mark.parametrize("params_name", ["vit_params", "hybrid_params"])
def test_save_load_round_trip_is_bit_identical(params_name, request, tmp_path):
    params = request.getfixturevalue(params_name)
    path = tmp_path / "model.npz"
    save(params, path)
    assert_trees_identical(load(path), params)
    assert_trees_identical(load(str(path)), params)


def test_saved_file_has_the_published_layout(hybrid_params, tmp_path):
    path = tmp_path / "hybrid.npz"
    save(hybrid_params, path)
    with np.load(path, allow_pickle=False) as npz:
        stored = {name: npz[name] for name in npz.files}
    assert stored.keys() == layout.to_published(hybrid_params).keys()
    assert QUERY in stored and "Transformer/encoderblock_1/MlpBlock_3/Dense_0/kernel" in stored
    gn = [k for k in stored if k.endswith(("gn_root/scale", "unit1/gn3/bias"))]
    assert gn and all(stored[k].shape[:3] == (1, 1, 1) and stored[k].ndim == 4 for k in gn)


def test_linen_layout_file_loads_to_the_same_tree(hybrid_params, tmp_path):
    renames = {"MultiHeadDotProductAttention_1": "MultiHeadDotProductAttention_0"}
    renames |= {"LayerNorm_2": "LayerNorm_1", "MlpBlock_3": "MlpBlock_0"}
    linen = {}
    for key, value in layout.flatten(hybrid_params).items():  # GroupNorm stays [C] in linen.
        linen["/".join(renames.get(part, part) for part in key.split("/"))] = value
    assert "Transformer/encoderblock_0/LayerNorm_1/scale" in linen
    path = tmp_path / "linen.npz"
    np.savez(path, allow_pickle=False, **linen)
    assert_trees_identical(load(path), hybrid_params)


def test_bfloat16_is_stored_as_float32(vit_params, tmp_path):
    params = {**vit_params, "cls": vit_params["cls"].astype(ml_dtypes.bfloat16)}
    save(params, tmp_path / "bf16.npz")
    loaded = load(tmp_path / "bf16.npz")
    assert loaded["cls"].dtype == np.float32
    np.testing.assert_array_equal(loaded["cls"], params["cls"].astype(np.float32))


def test_save_overwrites_atomically(vit_params, tmp_path):
    path = tmp_path / "model.npz"
    save(vit_params, path)
    save(vit_params, path)  # Replacing an existing file works.
    assert sorted(os.listdir(tmp_path)) == ["model.npz"]
    assert oct(path.stat().st_mode & 0o777) != oct(0o600)


def test_save_refuses_object_arrays(tmp_path):
    with pytest.raises(TypeError, match="pickling"):
        save({"cls": np.array([object()], dtype=object)}, tmp_path / "x.npz")
    assert not (tmp_path / "x.npz").exists()


# Bad files: each raises CheckpointError naming the file and what to do.


def write(tmp_path, name, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def load_error(path) -> str:
    with pytest.raises(CheckpointError) as info:
        load(path)
    message = str(info.value)
    assert str(path) in message
    return message


def test_missing_file_points_to_published_files(tmp_path):
    message = load_error(tmp_path / "ViT-B_16.npz")
    assert "does not exist" in message
    assert "gs://vit_models/imagenet21k/" in message and "gs://vit_models/augreg/" in message
    assert "https://storage.googleapis.com/vit_models/" in message


def test_checkpoint_error_is_a_value_error():
    assert issubclass(CheckpointError, ValueError)


def test_random_bytes(tmp_path):
    data = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    message = load_error(write(tmp_path, "random.npz", b"\xff\x00" + data))
    assert "not a checkpoint" in message and "not an .npz archive" in message


def test_text_file(tmp_path):
    message = load_error(write(tmp_path, "page.npz", b"<html><body>Not Found</body></html>\n"))
    assert "not a checkpoint" in message and "text file" in message


def test_git_lfs_pointer(tmp_path):
    pointer = b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 12\n"
    assert "git lfs pull" in load_error(write(tmp_path, "lfs.npz", pointer))


def test_empty_file(tmp_path):
    assert "empty or truncated" in load_error(write(tmp_path, "empty.npz", b""))


def test_npy_instead_of_npz(tmp_path):
    path = tmp_path / "array.npy"
    np.save(path, np.zeros(3))
    assert "single .npy array" in load_error(path)


def test_pickle_file_is_never_unpickled(tmp_path):
    class Boom:
        def __reduce__(self):
            return (os.remove, (str(tmp_path / "victim"),))

    (tmp_path / "victim").write_text("still here")
    message = load_error(write(tmp_path, "params.pkl", pickle.dumps({"a": Boom()})))
    assert "pickle" in message and "never unpickled" in message
    assert (tmp_path / "victim").exists()


def test_pickled_object_arrays(tmp_path):
    path = tmp_path / "objects.npz"
    np.savez(path, **{"embedding/kernel": np.array([{"a": 1}], dtype=object)})
    message = load_error(path)
    assert "pickled object arrays" in message and "vit_jax.checkpoint.save" in message


def test_npz_without_vit_keys(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, allow_pickle=False, weights=np.zeros(3), bias=np.zeros(2))
    message = load_error(path)
    assert "not a ViT checkpoint" in message and "embedding/kernel" in message
    assert "bias, weights" in message  # The keys that were found.


def test_zip_that_is_not_npz(tmp_path):
    import zipfile

    path = tmp_path / "archive.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("embedding/kernel.txt", "hello")
        archive.writestr("Transformer/encoderblock_0/x.txt", "hello")
    assert "not numeric .npy arrays" in load_error(path)


@pytest.mark.parametrize("fraction", [0.5, 0.95, 0.999])
def test_truncated_file(vit_params, tmp_path, fraction):
    good = tmp_path / "good.npz"
    save(vit_params, good)
    data = good.read_bytes()
    message = load_error(write(tmp_path, "cut.npz", data[: int(len(data) * fraction)]))
    assert "truncated or corrupt" in message and "again" in message


def test_corrupted_member(vit_params, tmp_path):
    good = tmp_path / "good.npz"
    save(vit_params, good)
    data = bytearray(good.read_bytes())
    data[len(data) // 2] ^= 0xFF  # Inside an array's bytes: the CRC check fails.
    message = load_error(write(tmp_path, "flipped.npz", bytes(data)))
    assert "corrupt" in message


def test_directory(tmp_path):
    (tmp_path / "ckpt").mkdir()
    assert "is a directory" in load_error(tmp_path / "ckpt")


def test_scan_layers_tree_is_saved_per_layer(vit_params, tmp_path):
    stacked = stack_encoder_blocks(vit_params)
    assert "encoderblock" in stacked["Transformer"]
    save(stacked, tmp_path / "scan.npz")
    assert_trees_identical(load(tmp_path / "scan.npz"), vit_params)
