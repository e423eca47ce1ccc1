"""Exact, type-checked serialisation of plain Python values between sandbox and judge.

A program under test hands its return values to the trusted parent through `encode`, which
accepts only exact built-in types (`type(v) is int`, never a subclass), so an object whose
`__eq__` always answers True, or a subclass of list with a forged `__eq__`, cannot pass
through: it is rejected as unserialisable. The parent rebuilds plain values with `decode` and
compares them itself.

Covered: None, bool, int (any size), float (nan, inf, -0.0), complex, str, bytes, bytearray,
list, tuple, dict (any hashable keys), set, frozenset, range, dict views, and iterators or
generators (materialised; decoded as an iterator over the items, so `list(f(x))` works and
`f(x) == [...]` stays False as it would be for the real iterator). Not covered: instances of
user classes, functions, modules, numpy values.

This module is imported by the sandbox harness before the program runs, so it keeps private
references to the built-ins it needs; a program that rebinds `builtins.type` or `isinstance`
does not change what it does.
"""

from __future__ import annotations

import json as _json
import math as _math
import types as _types

_type = type
_len = len
_list = list
_int = int
_str = str
_float = float
_isinstance = isinstance
_iter = iter
_dumps = _json.dumps
_loads = _json.loads
_MAX_DEPTH = 64
_MAX_ITEMS = 1_000_000

_ITERATOR_TYPES = (
    _types.GeneratorType, _type(_iter([])), _type(_iter(())), _type(_iter("")), map, filter,
    zip, enumerate, reversed, _type(_iter(range(0))), _type(_iter({}.keys())),
    _type(_iter({}.values())), _type(_iter({}.items())), _type(_iter(set())),
)


class Unserialisable(TypeError):
    """The value is not made of plain built-in types."""


def _canonical(encoded) -> str:
    return _dumps(encoded, sort_keys=True)


def _enc(v, depth: int, budget: list[int]):
    if depth > _MAX_DEPTH:
        raise Unserialisable("value nested too deeply")
    budget[0] -= 1
    if budget[0] < 0:
        raise Unserialisable("value too large")
    t = _type(v)
    if v is None or t is bool or t is _str:
        return v
    if t is _int:
        if -(1 << 63) <= v < (1 << 63):
            return v
        return {"$I": hex(v)}
    if t is _float:
        if v != v or v in (_math.inf, -_math.inf):
            return {"$F": repr(v)}
        return v
    if t is _list:
        return [_enc(x, depth + 1, budget) for x in v]
    if t is tuple:
        return {"$t": [_enc(x, depth + 1, budget) for x in v]}
    if t is dict:
        return {"$d": [[_enc(k, depth + 1, budget), _enc(x, depth + 1, budget)]
                       for k, x in v.items()]}
    if t is set or t is frozenset:
        # Canonical order: iteration order of str/bytes elements depends on the process's
        # hash seed, and the sandbox and the judge must encode equal sets identically.
        items = [_enc(x, depth + 1, budget) for x in v]
        items.sort(key=_canonical)
        return {"$s" if t is set else "$fs": items}
    if t is complex:
        return {"$c": [_enc(v.real, depth + 1, budget), _enc(v.imag, depth + 1, budget)]}
    if t is bytes or t is bytearray:
        return {"$b" if t is bytes else "$ba": v.hex()}
    if t is range:
        return {"$r": [v.start, v.stop, v.step]}
    if t is _type({}.keys()):
        return {"$dk": [_enc(x, depth + 1, budget) for x in v]}
    if t is _type({}.values()):
        return {"$dv": [_enc(x, depth + 1, budget) for x in v]}
    if t is _type({}.items()):
        return {"$di": [[_enc(k, depth + 1, budget), _enc(x, depth + 1, budget)] for k, x in v]}
    if t in _ITERATOR_TYPES:
        items = []
        for x in v:
            items.append(_enc(x, depth + 1, budget))
        return {"$it": items}
    raise Unserialisable(f"values of type {t.__name__} cannot be returned to the judge")


def encode(value) -> object:
    """A JSON-ready form of `value`; raises Unserialisable for anything not plain."""
    try:
        return _enc(value, 0, [_MAX_ITEMS])
    except RecursionError:
        raise Unserialisable("value nested too deeply") from None


def dumps(value) -> str:
    return _dumps(encode(value), separators=(",", ":"), allow_nan=False)


def decode(obj):
    """Rebuild the value that `encode` described; raises ValueError on a malformed form."""
    t = _type(obj)
    if obj is None or t in (bool, _int, _float, _str):
        return obj
    if t is _list:
        return [decode(x) for x in obj]
    if t is not dict or _len(obj) != 1:
        raise ValueError(f"malformed encoded value: {obj!r:.80}")
    (tag, body), = obj.items()
    if tag == "$I":
        return _int(body, 16)
    if tag == "$F":
        if body not in ("nan", "inf", "-inf"):
            raise ValueError(f"malformed float {body!r}")
        return _float(body)
    if tag == "$t":
        return tuple(decode(x) for x in body)
    if tag == "$d":
        return {decode(k): decode(x) for k, x in body}
    if tag == "$s":
        return {decode(x) for x in body}
    if tag == "$fs":
        return frozenset(decode(x) for x in body)
    if tag == "$c":
        return complex(decode(body[0]), decode(body[1]))
    if tag == "$b":
        return bytes.fromhex(body)
    if tag == "$ba":
        return bytearray.fromhex(body)
    if tag == "$r":
        return range(*body)
    if tag == "$dk":
        return dict.fromkeys(decode(x) for x in body).keys()
    if tag == "$dv":
        return {i: decode(x) for i, x in enumerate(body)}.values()
    if tag == "$di":
        return {decode(k): decode(x) for k, x in body}.items()
    if tag == "$it":
        return iter([decode(x) for x in body])
    raise ValueError(f"unknown tag {tag!r}")


def loads(text: str):
    return decode(_loads(text))
