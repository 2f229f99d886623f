"""A registry of small preprocessing ops and the parser for strings like `decode|flip_lr`.

An op string is `|`-separated calls, each a registered name with optional Python-literal
arguments: `decode|inception_crop(384)|flip_lr|value_range(-1, 1)|onehot(10)`. Every op maps
a dict of tensors (one example) to a new dict, so the same function runs eagerly in tests
and inside `tf.data.Dataset.map`.

Random ops never use TensorFlow's stateful RNG: they draw a seed from the example's `_rng`
entry (a [2] int64 tensor the pipeline derives from `config.seed` and the example's
position), which makes every run with the same seed identical and makes resumption exact.
"""

from __future__ import annotations

import ast
from collections.abc import Callable

import tensorflow as tf

from vit_jax.data.errors import DataError, unknown_name_error

Features = dict[str, tf.Tensor]
Op = Callable[[Features], Features]

RNG_KEY = "_rng"
_OPS: dict[str, Callable[..., Op]] = {}


def register(name: str) -> Callable[[Callable[..., Op]], Callable[..., Op]]:
    """Registers an op factory under `name`: `factory(*args, **kwargs) -> Op`."""

    def wrap(factory: Callable[..., Op]) -> Callable[..., Op]:
        if name in _OPS:
            raise ValueError(f"pp op {name!r} is registered twice.")
        _OPS[name] = factory
        return factory

    return wrap


def take_seed(data: Features) -> tuple[Features, tf.Tensor]:
    """Splits the example's `_rng` into a fresh seed for one op and the rest for later ops."""
    if RNG_KEY not in data:
        raise DataError(f"A random pp op needs the {RNG_KEY!r} seed entry in the example.")
    rest, seed = tf.unstack(tf.random.experimental.stateless_split(data[RNG_KEY], 2))
    return {**data, RNG_KEY: rest}, seed


def _literal(node: ast.expr, spec: str) -> object:
    try:
        return ast.literal_eval(node)
    except ValueError as e:
        raise DataError(f"pp op arguments must be Python literals in {spec!r}.") from e


def _parse_one(spec: str) -> Op:
    try:
        node = ast.parse(spec.strip(), mode="eval").body
    except SyntaxError as e:
        raise DataError(f"Cannot parse pp op {spec!r}: {e.msg}.") from e
    args: list[object] = []
    kwargs: dict[str, object] = {}
    if isinstance(node, ast.Call):
        args = [_literal(a, spec) for a in node.args]
        kwargs = {k.arg: _literal(k.value, spec) for k in node.keywords if k.arg}
        node = node.func
    if not isinstance(node, ast.Name):
        raise DataError(f"A pp op must be `name` or `name(args)`, got {spec!r}.")
    if node.id not in _OPS:
        raise unknown_name_error("pp op", node.id, _OPS)
    try:
        return _OPS[node.id](*args, **kwargs)
    except TypeError as e:
        raise DataError(f"Bad arguments in pp op {spec!r}: {e}.") from e


def parse(spec: str) -> Op:
    """Turns an op string into one function applying all ops in order."""
    ops = [_parse_one(part) for part in spec.split("|") if part.strip()]

    def apply(data: Features) -> Features:
        for op in ops:
            data = op(data)
        return data

    return apply
