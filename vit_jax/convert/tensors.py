"""Lazy tensor collections and a streaming safetensors writer.

Conversion never needs the whole model in memory twice. Sources are read lazily (an `.npz`
is loaded once by `vit_jax.checkpoint.load`; safetensors tensor by tensor; `.pth` files with
`mmap=True`), and `write_safetensors` writes one tensor at a time: the header is computed from
the shapes up front, so no second copy of the model is ever assembled. Reading and writing
safetensors needs only numpy; torch is needed for `.pth`/`.bin` files alone.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import tqdm

from vit_jax.convert.errors import ConversionError
from vit_jax.convert.rules import Rule, Shape


class Tensors(Protocol):
    """Named arrays whose shapes are known before any data is read."""

    def shapes(self) -> Mapping[str, Shape]: ...

    def dtype(self, key: str) -> np.dtype: ...

    def get(self, key: str) -> np.ndarray: ...


class InMemory:
    """A flat dict of arrays as `Tensors`."""

    def __init__(self, arrays: Mapping[str, Any]):
        self._arrays = arrays

    def shapes(self) -> dict[str, Shape]:
        return {key: tuple(value.shape) for key, value in self._arrays.items()}

    def dtype(self, key: str) -> np.dtype:
        return np.dtype(self._arrays[key].dtype)

    def get(self, key: str) -> np.ndarray:
        return np.asarray(self._arrays[key])


def _to_numpy(tensor: Any) -> np.ndarray:
    """A torch tensor as a float32-or-native numpy array (bfloat16 widens to float32)."""
    import torch

    tensor = tensor.detach().cpu()
    if tensor.dtype == torch.bfloat16:
        tensor = tensor.float()  # numpy has no bfloat16; float32 holds it exactly.
    return tensor.numpy()


class SafetensorsFiles:
    """Tensors of one or more safetensors files (a sharded checkpoint), read on demand.

    Reads with plain file I/O rather than a memory map, so a converted tensor's pages do not
    stay resident: converting a large model holds one copy of it, not two.
    """

    def __init__(self, paths: Sequence[str | os.PathLike]):
        self._entries: dict[str, tuple[str, str, Shape, int]] = {}  # path, dtype, shape, offset
        for path in map(os.fspath, paths):
            for key, entry in _read_header(path).items():
                self._entries[key] = (path, *entry)

    def shapes(self) -> dict[str, Shape]:
        return {key: entry[2] for key, entry in self._entries.items()}

    def dtype(self, key: str) -> np.dtype:
        dtype = self._entries[key][1]
        return np.dtype("float32" if dtype == "BF16" else _SAFETENSORS_TO_NUMPY[dtype])

    def get(self, key: str) -> np.ndarray:
        path, dtype, shape, offset = self._entries[key]
        stored = np.dtype(_SAFETENSORS_TO_NUMPY.get(dtype, "uint16")).newbyteorder("<")
        count = int(np.prod(shape, dtype=np.int64))
        array = np.fromfile(path, dtype=stored, count=count, offset=offset).reshape(shape)
        if dtype == "BF16":  # The high half of a float32: widen exactly.
            array = (array.astype(np.uint32) << 16).view(np.float32)
        return array.astype(array.dtype.newbyteorder("="), copy=False)


def _read_header(path: str) -> dict[str, tuple[str, Shape, int]]:
    """`{key: (dtype, shape, absolute data offset)}` from a safetensors file's JSON header."""

    def invalid(why: str) -> ConversionError:
        return ConversionError(
            f"{path} is not a readable safetensors file ({why}). Pass a file written by "
            "safetensors, or a directory holding one."
        )

    size = os.path.getsize(path)
    with open(path, "rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise invalid("too short")
        (length,) = struct.unpack("<Q", prefix)
        if length > min(size - 8, _MAX_HEADER):
            raise invalid("bad header length")
        try:
            header = json.loads(f.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise invalid(f"bad header: {e}") from e
    if not isinstance(header, dict):
        raise invalid("bad header")
    entries = {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = info["dtype"], tuple(info["shape"]), info["data_offsets"]
        except (KeyError, TypeError, ValueError) as e:
            raise invalid(f"bad entry for {key!r}") from e
        if dtype not in _SAFETENSORS_TO_NUMPY and dtype != "BF16":
            raise invalid(f"{key!r} has unsupported dtype {dtype}")
        itemsize = 2 if dtype == "BF16" else np.dtype(_SAFETENSORS_TO_NUMPY[dtype]).itemsize
        if end - begin != int(np.prod(shape, dtype=np.int64)) * itemsize or 8 + length + end > size:
            raise invalid(f"{key!r} does not fit its data range (truncated file?)")
        entries[key] = (dtype, shape, 8 + length + begin)
    return entries


class TorchFile:
    """Tensors of a `.pth`/`.bin` state dict, loaded with `weights_only=True` (no pickled code)."""

    def __init__(self, path: str | os.PathLike):
        import torch

        try:
            state = torch.load(os.fspath(path), map_location="cpu", weights_only=True, mmap=True)
        except Exception as e:  # Unpickling errors come in many types.
            raise ConversionError(
                f"{path} could not be loaded as a PyTorch state dict without executing code "
                f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). Save the "
                "weights with torch.save(model.state_dict(), path) or as safetensors."
            ) from e
        for wrapper in ("state_dict", "model", "state_dict_ema", "model_ema"):
            if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
                state = state[wrapper]
                break
        if not isinstance(state, dict) or not all(
            isinstance(v, torch.Tensor) for v in state.values()
        ):
            raise ConversionError(
                f"{path} holds no state dict of tensors. Save the weights with "
                "torch.save(model.state_dict(), path)."
            )
        self._state = {key.removeprefix("module."): value for key, value in state.items()}

    def shapes(self) -> dict[str, Shape]:
        return {key: tuple(value.shape) for key, value in self._state.items()}

    def dtype(self, key: str) -> np.dtype:
        return _to_numpy(self._state[key].new_empty(0)).dtype

    def get(self, key: str) -> np.ndarray:
        return _to_numpy(self._state[key])


class Renamed:
    """`Tensors` under other names: `renames` maps a new name to the underlying one."""

    def __init__(self, tensors: Tensors, renames: Mapping[str, str]):
        self._tensors = tensors
        self._renames = dict(renames)

    def shapes(self) -> dict[str, Shape]:
        shapes = self._tensors.shapes()
        return {new: shapes[old] for new, old in self._renames.items()}

    def dtype(self, key: str) -> np.dtype:
        return self._tensors.dtype(self._renames[key])

    def get(self, key: str) -> np.ndarray:
        return self._tensors.get(self._renames[key])


class FromTorch:
    """Published-layout `Tensors` computed lazily from a PyTorch-layout source via `rules`."""

    def __init__(self, source: Tensors, rules: Sequence[Rule], heads: int):
        self._source = source
        self._heads = heads
        self._rule: dict[str, tuple[Rule, int]] = {}
        source_shapes = source.shapes()
        self._shapes: dict[str, Shape] = {}
        for rule in rules:
            shapes = rule.published_shapes(source_shapes[rule.torch], heads)
            for index, (key, shape) in enumerate(zip(rule.published, shapes)):
                self._rule[key] = (rule, index)
                self._shapes[key] = shape
        self._cached: tuple[str, list[np.ndarray]] | None = None  # The last fused tensor's parts.

    def shapes(self) -> dict[str, Shape]:
        return dict(self._shapes)

    def dtype(self, key: str) -> np.dtype:
        return self._source.dtype(self._rule[key][0].torch)

    def get(self, key: str) -> np.ndarray:
        rule, index = self._rule[key]
        if self._cached is None or self._cached[0] != rule.torch:
            parts = rule.from_torch(self._source.get(rule.torch), self._heads)
            self._cached = (rule.torch, [np.ascontiguousarray(p) for p in parts])
        return self._cached[1][index]


_NUMPY_TO_SAFETENSORS = {
    "float64": "F64",
    "float32": "F32",
    "float16": "F16",
    "bfloat16": "BF16",
    "int64": "I64",
    "int32": "I32",
}
_SAFETENSORS_TO_NUMPY = {v: k for k, v in _NUMPY_TO_SAFETENSORS.items() if k != "bfloat16"}
_ALIGN = 8  # safetensors pads its JSON header with spaces to a multiple of 8 bytes.
_MAX_HEADER = 100 << 20  # safetensors' own limit on the header size.


def torch_tensors(source: Tensors, rules: Sequence[Rule]) -> Iterator[tuple[str, np.ndarray]]:
    """`(PyTorch key, array)` pairs, one at a time, from published-layout `source`."""
    for rule in rules:
        yield rule.torch, rule.to_torch([source.get(key) for key in rule.published])


def write_safetensors(
    path: str | os.PathLike,
    source: Tensors,
    rules: Sequence[Rule],
    *,
    metadata: Mapping[str, str] | None = None,
    progress: bool = True,
) -> None:
    """Writes `rules` applied to `source` as one safetensors file, tensor by tensor.

    Peak memory is one converted tensor on top of `source`. The file appears under its name only
    when complete.
    """
    source_shapes = source.shapes()
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = dict(metadata)
    offset = 0
    sizes = []
    for rule in rules:
        dtype = source.dtype(rule.published[0])
        if dtype.name not in _NUMPY_TO_SAFETENSORS:
            raise ConversionError(f"{rule.published[0]} has dtype {dtype}, which is not numeric.")
        shape = rule.torch_shape([source_shapes[key] for key in rule.published])
        size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        header[rule.torch] = {
            "dtype": _NUMPY_TO_SAFETENSORS[dtype.name],
            "shape": list(shape),
            "data_offsets": [offset, offset + size],
        }
        sizes.append(size)
        offset += size
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % _ALIGN)

    path = os.fspath(path)
    tmp = f"{path}.partial"
    bar = tqdm.tqdm(
        total=offset,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=f"Writing {os.path.basename(path)}",
        disable=not progress,
    )
    try:
        with open(tmp, "wb") as f, bar:
            f.write(struct.pack("<Q", len(encoded)))
            f.write(encoded)
            for (key, array), size in zip(torch_tensors(source, rules), sizes):
                data = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
                if data.nbytes != size:
                    raise AssertionError(f"{key}: {data.nbytes} bytes, header says {size}.")
                f.write(data.reshape(-1).view(np.uint8))
                bar.update(size)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
