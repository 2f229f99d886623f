"""Tensor-by-tensor mapping between the published parameter layout and a PyTorch layout.

A layout is a table of `Entry`s. Each entry pairs one or more published keys (flat,
'/'-joined, the model's tree: GroupNorm parameters `[C]`) with one PyTorch key and a `Transform`
that reshapes/transposes between them:

    Entry("Transformer/encoderblock_{i}/MlpBlock_3/Dense_0/kernel", "blocks.{i}.mlp.fc1.weight",
          DENSE)

`{i}` stands for a number; `{s-1}` on the PyTorch side for the published number minus one
(the published ResNet stages and units count from 1, PyTorch modules from 0). An entry with
several published keys fuses them along axis 0 (timm's `qkv` Linear holds query, key and
value). The same table maps both ways, and every transform is a transpose or reshape, so a
round trip is bit-identical.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np

from vit_jax.convert.errors import ConversionError

Shape = tuple[int, ...]

# Published keys of encoder block {i} and of its attention layer, as every table spells them.
BLOCK = "Transformer/encoderblock_{i}/"
ATTN = BLOCK + "MultiHeadDotProductAttention_1/"


@dataclasses.dataclass(frozen=True)
class Transform:
    """Published array -> PyTorch array and back; `heads` is the attention head count."""

    name: str
    to_torch: Callable[[np.ndarray], np.ndarray]
    from_torch: Callable[[np.ndarray, int], np.ndarray]
    torch_shape: Callable[[Shape], Shape]
    published_shape: Callable[[Shape, int], Shape]


def _split_heads(size: int, heads: int) -> tuple[int, int]:
    if heads < 1 or size % heads:
        raise ConversionError(
            f"{size} attention features cannot be split into {heads} heads; the head count "
            "given or inferred for this checkpoint is wrong (pass --num-heads)."
        )
    return heads, size // heads


IDENTITY = Transform(
    "identity",
    to_torch=lambda x: x,
    from_torch=lambda x, heads: x,
    torch_shape=lambda s: s,
    published_shape=lambda s, heads: s,
)
# Convolution kernel: [kh, kw, in, out] (HWIO) <-> [out, in, kh, kw] (OIHW).
CONV = Transform(
    "conv",
    to_torch=lambda x: x.transpose(3, 2, 0, 1),
    from_torch=lambda x, heads: x.transpose(2, 3, 1, 0),
    torch_shape=lambda s: (s[3], s[2], s[0], s[1]),
    published_shape=lambda s, heads: (s[2], s[3], s[1], s[0]),
)
# Dense kernel: [in, out] <-> torch.nn.Linear weight [out, in].
DENSE = Transform(
    "dense",
    to_torch=lambda x: x.T,
    from_torch=lambda x, heads: x.T,
    torch_shape=lambda s: (s[1], s[0]),
    published_shape=lambda s, heads: (s[1], s[0]),
)
# Query/key/value kernel: [D, H, K] <-> Linear weight [H*K, D].
HEADS_IN = Transform(
    "heads_in",
    to_torch=lambda x: x.reshape(x.shape[0], -1).T,
    from_torch=lambda x, heads: x.T.reshape(x.shape[1], *_split_heads(x.shape[0], heads)),
    torch_shape=lambda s: (s[1] * s[2], s[0]),
    published_shape=lambda s, heads: (s[1], *_split_heads(s[0], heads)),
)
# Query/key/value bias: [H, K] <-> [H*K].
HEADS_BIAS = Transform(
    "heads_bias",
    to_torch=lambda x: x.reshape(-1),
    from_torch=lambda x, heads: x.reshape(_split_heads(x.shape[0], heads)),
    torch_shape=lambda s: (s[0] * s[1],),
    published_shape=lambda s, heads: _split_heads(s[0], heads),
)
# Attention output kernel: [H, K, D] <-> Linear weight [D, H*K].
HEADS_OUT = Transform(
    "heads_out",
    to_torch=lambda x: x.reshape(-1, x.shape[-1]).T,
    from_torch=lambda x, heads: x.T.reshape(*_split_heads(x.shape[1], heads), x.shape[0]),
    torch_shape=lambda s: (s[2], s[0] * s[1]),
    published_shape=lambda s, heads: (*_split_heads(s[1], heads), s[0]),
)


_FIELD = re.compile(r"\{(\w+)(-1)?\}")


class Template:
    """A key with numbered fields: `"blocks.{i}.norm1.weight"`, `"stages.{s-1}.blocks"`."""

    def __init__(self, text: str):
        self.text = text
        self._offsets: dict[str, int] = {}
        pattern, pos = "", 0
        for m in _FIELD.finditer(text):
            name = m.group(1)
            self._offsets[name] = 1 if m.group(2) else 0
            pattern += re.escape(text[pos : m.start()]) + rf"(?P<{name}>\d+)"
            pos = m.end()
        self._regex = re.compile(pattern + re.escape(text[pos:]) + "$")

    def match(self, key: str) -> dict[str, int] | None:
        """The field values (published numbering) of `key`, or None if it does not match."""
        m = self._regex.match(key)
        if m is None:
            return None
        return {name: int(value) + self._offsets[name] for name, value in m.groupdict().items()}

    def format(self, fields: Mapping[str, int]) -> str:
        return _FIELD.sub(lambda m: str(fields[m.group(1)] - self._offsets[m.group(1)]), self.text)


@functools.cache
def template(text: str) -> Template:
    """The `Template` of `text`, compiled once."""
    return Template(text)


@dataclasses.dataclass(frozen=True)
class Entry:
    """One row of a layout table: published key(s) <-> one PyTorch key."""

    published: str | tuple[str, ...]
    torch: str
    transform: Transform = IDENTITY

    @property
    def published_templates(self) -> tuple[Template, ...]:
        names = (self.published,) if isinstance(self.published, str) else self.published
        return tuple(template(name) for name in names)


@dataclasses.dataclass(frozen=True)
class Rule:
    """A resolved entry: concrete published keys, PyTorch key and transform."""

    published: tuple[str, ...]
    torch: str
    transform: Transform

    def to_torch(self, arrays: Sequence[np.ndarray]) -> np.ndarray:
        parts = [self.transform.to_torch(np.asarray(a)) for a in arrays]
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)

    def torch_shape(self, shapes: Sequence[Shape]) -> Shape:
        parts = [self.transform.torch_shape(tuple(s)) for s in shapes]
        return (sum(p[0] for p in parts), *parts[0][1:])

    def from_torch(self, array: np.ndarray, heads: int) -> list[np.ndarray]:
        parts = np.split(array, len(self.published), axis=0) if len(self.published) > 1 else [array]
        return [self.transform.from_torch(p, heads) for p in parts]

    def published_shapes(self, shape: Shape, heads: int) -> list[Shape]:
        part = (shape[0] // len(self.published), *shape[1:])
        return [self.transform.published_shape(part, heads) for _ in self.published]


def _describe_keys(keys: Sequence[str], limit: int = 6) -> str:
    shown = ", ".join(keys[:limit])
    return f"{shown}, ... ({len(keys)} in all)" if len(keys) > limit else shown


def rules_from_published(keys: Iterable[str], table: Sequence[Entry], *, target: str) -> list[Rule]:
    """The rules that write every published key in `keys`; ConversionError for unmapped keys."""
    keys = list(keys)
    present = set(keys)
    rules: dict[str, Rule] = {}
    unmapped = []
    for key in keys:
        for entry in table:
            templates = entry.published_templates
            fields = next((f for t in templates if (f := t.match(key)) is not None), None)
            if fields is None:
                continue
            torch_key = template(entry.torch).format(fields)
            if torch_key not in rules:
                published = tuple(t.format(fields) for t in templates)
                missing = [name for name in published if name not in present]
                if missing:
                    raise ConversionError(
                        f"The checkpoint has {key} but not {', '.join(missing)}, which {target} "
                        "stores together with it; the file is incomplete."
                    )
                rules[torch_key] = Rule(published, torch_key, entry.transform)
            break
        else:
            unmapped.append(key)
    if unmapped:
        raise ConversionError(
            f"{len(unmapped)} parameters have no place in the {target} layout: "
            f"{_describe_keys(sorted(unmapped))}."
        )
    return list(rules.values())


def rules_from_torch(keys: Iterable[str], table: Sequence[Entry], *, source: str) -> list[Rule]:
    """The rules that read every PyTorch key in `keys`; ConversionError for unknown keys."""
    rules, unknown = [], []
    for key in keys:
        for entry in table:
            fields = template(entry.torch).match(key)
            if fields is not None:
                published = tuple(t.format(fields) for t in entry.published_templates)
                rules.append(Rule(published, key, entry.transform))
                break
        else:
            unknown.append(key)
    if unknown:
        raise ConversionError(
            f"{len(unknown)} tensors of this {source} checkpoint have no counterpart in the "
            f"published ViT layout: {_describe_keys(sorted(unknown))}. Only plain ViT and "
            "ViT-hybrid models of google-research/vision_transformer's design convert."
        )
    return rules
