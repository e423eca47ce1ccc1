"""Values written as Python literals for `rltf gen-tests`: `to_literal` renders a value as
Python source that rebuilds it exactly (the generated asserts' arguments and expected values).
"""

from __future__ import annotations

import math
from typing import Any


class Unliteral(ValueError):
    """A value with no exact Python literal (nan, or not plain data)."""


def to_literal(v: Any, sort_dicts: bool = False) -> str:
    """Python source that evaluates to a value equal to `v` (same types). Set items are
    written sorted, so the text does not depend on the string-hash seed; with `sort_dicts`,
    dict entries too (for expected values: dict equality ignores order, but a program's dict
    may be filled in an order that depends on the seed)."""
    t = type(v)
    if t is int and v.bit_length() > 4000:  # repr refuses over 4300 digits; too long anyway
        raise Unliteral("integer too large to write")
    if v is None or t in (bool, int, str, bytes, bytearray, range):
        return repr(v)
    if t is float:
        if math.isnan(v):
            raise Unliteral("nan")
        if math.isinf(v):
            return "float('inf')" if v > 0 else "float('-inf')"
        return repr(v)
    if t is complex:
        if math.isnan(v.real) or math.isnan(v.imag) or math.isinf(v.real) or math.isinf(v.imag):
            raise Unliteral("complex with nan or inf")
        return repr(v)
    if t is list:
        return "[" + ", ".join(to_literal(x, sort_dicts) for x in v) + "]"
    if t is tuple:
        items = [to_literal(x, sort_dicts) for x in v]
        return "(" + items[0] + ",)" if len(items) == 1 else "(" + ", ".join(items) + ")"
    if t is dict:
        items = [f"{to_literal(k, sort_dicts)}: {to_literal(x, sort_dicts)}"
                 for k, x in v.items()]
        return "{" + ", ".join(sorted(items) if sort_dicts else items) + "}"
    if t in (set, frozenset):
        items = sorted(to_literal(x, sort_dicts) for x in v)
        body = "{" + ", ".join(items) + "}" if items else ""
        if t is set:
            return body or "set()"
        return f"frozenset({body})"
    raise Unliteral(f"values of type {t.__name__}")
