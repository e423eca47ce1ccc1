"""Seeded input values for `rltf gen-tests`: values for type specs (`specs.py`).

    gen = InputGen(random.Random("0:mod.fn"), consts=harvest_constants(tree))
    gen.edges(spec)    # the edge values of a spec, the program's own constants among them
    gen.sample(spec)   # one seeded random value

Edge values come first (0, 1, -1, large ints, empty containers and strings, ...), then random
values (strings: words, the program's own string constants spliced together, indented lines
of words, random characters); both depend only on the generator's seed.
"""

from __future__ import annotations

import ast
import math
import random
from typing import Any

from problems.gentests.literals import to_literal
from problems.gentests.specs import Spec, Unsupported


_INT_EDGES = (0, 1, -1, 10**6, 2, 10, 100, -100)
_FLOAT_EDGES = (0.0, 1.0, -1.0, 1e9, 0.5, 2.5, -3.75, 1e-9)
_STR_EDGES = ("", "a", "hello world", " ", "Hello, World!", "0", "123", "a.b.c", "foo_bar",
              "CamelCase", "/path/to/file.txt", "x=1&y=2", "  padded  ", "ÄÖü ß", "\n", "-5")
_BYTES_EDGES = (b"", b"a", b"hello", b"\x00\xff", b"123")
_WORDS = ("foo", "bar", "baz", "spam", "eggs", "x", "key", "value", "1.2.3", "a/b", "é", "Z9",
          "test", "__init__", "http://example.com", "None", "True", "3.14", "a b", "tab\t",
          "1, 2, 3", "10 20 30", "(4, 5)", "7,8", "level", "Python is fun")
_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ._-/:,@#"


def harvest_constants(tree: ast.AST) -> dict[str, list]:
    """Literal constants of a program (docstrings excepted), by type, as extra test values:
    each int c gives c - 1, c and c + 1 (boundaries of comparisons); strings up to 40
    characters. Test generators commonly seed inputs this way (e.g. Pynguin, EvoSuite)."""
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            and n.body and isinstance(n.body[0], ast.Expr)
            and isinstance(n.body[0].value, ast.Constant)}
    out: dict[str, list] = {"int": [], "float": [], "str": [], "bytes": []}
    for n in ast.walk(tree):
        if not isinstance(n, ast.Constant) or id(n) in docs:
            continue
        v, t = n.value, type(n.value)
        if t is int and abs(v) <= 10**6:
            out["int"] += [v - 1, v, v + 1]
        elif t is float and math.isfinite(v):
            out["float"].append(v)
        elif t in (str, bytes) and len(v) <= 40:
            out[t.__name__].append(v)
    return {k: sorted(set(v), key=lambda x: (len(repr(x)), repr(x)))[:24]
            for k, v in out.items() if v}


class InputGen:
    """Seeded values for specs: `edges(spec)` lists edge values, `sample(spec)` draws one.
    `consts` (from `harvest_constants`) adds the program's own literals to both."""

    def __init__(self, rng: random.Random, max_len: int = 4, consts: dict | None = None,
                 small: bool = False):
        self.rng = rng
        self.max_len = max_len
        self.consts = consts or {}
        # small: a second chance for functions whose outputs never varied; values from tiny
        # domains (ints 0-4, strings over "ab "), longer containers: repeats and equal items
        self.small = small

    def edges(self, spec: Spec) -> list:
        k, a = spec.kind, spec.args
        extra = list(self.consts.get(k, ()))
        if k == "int":
            return _unique(list(_INT_EDGES) + extra)
        if k == "float":
            return _unique(list(_FLOAT_EDGES) + extra)
        if k == "str":
            return _unique(list(_STR_EDGES[:6]) + extra + list(_STR_EDGES[6:]))
        if k == "bool":
            return [False, True]
        if k == "bytes":
            return _unique(list(_BYTES_EDGES) + extra)
        if k == "none":
            return [None]
        if k == "literal":
            return list(a)
        if k == "union":
            cols = [self.edges(s) for s in a]
            out = []
            for i in range(max(map(len, cols))):  # interleave members
                out += [c[i] for c in cols if i < len(c)]
            return out
        if k in ("list", "tuplevar", "set", "frozenset"):
            inner = self.edges(a[0])
            rows = [[], inner[:1], inner[1:4] or inner[:1], inner[:1] * 3]
            make = {"list": list, "tuplevar": tuple, "set": set, "frozenset": frozenset}[k]
            return _unique([make(r) for r in rows])
        if k == "dict":
            keys, vals = self.edges(a[0]), self.edges(a[1])
            return _unique([{}, {keys[0]: vals[0]},
                            dict(zip(keys[1:4], vals[1:4] or vals[:1] * 3))])
        if k == "tuple":
            cols = [self.edges(s) for s in a]
            n = max([len(c) for c in cols] + [1])
            return _unique([tuple(c[i % len(c)] for c in cols) for i in range(min(n, 4))])
        raise Unsupported(str(spec))

    def sample(self, spec: Spec, depth: int = 0) -> Any:
        r, k, a = self.rng, spec.kind, spec.args
        if k in self.consts and r.random() < 0.35:
            return r.choice(self.consts[k])
        if self.small and k in ("int", "float", "str") and r.random() < 0.8:
            if k == "str":
                return "".join(r.choice("ab ") for _ in range(r.randint(0, 6)))
            return r.randint(0, 4) if k == "int" else r.choice((0.0, 0.5, 1.0, 1.5, 2.0))
        if k == "int":
            roll = r.random()
            if roll < 0.7:
                return r.randint(-5, 30)
            return r.randint(-1000, 1000) if roll < 0.95 else r.randint(-10**9, 10**9)
        if k == "float":
            return round(r.uniform(-100, 100), r.choice((0, 1, 2, 3)))
        if k == "str":
            roll = r.random()
            if roll < 0.35:
                return r.choice(_WORDS + _STR_EDGES)
            if roll < 0.55 and self.consts.get("str"):  # the program's own strings, spliced
                parts = self.consts["str"] + list(_WORDS[:8]) + [" "]
                return "".join(r.choice(parts) for _ in range(r.randint(2, 4)))
            if roll < 0.7:  # text: words on lines, some indented
                return "\n".join(" " * r.choice((0, 0, 2, 4)) + " ".join(
                    r.choice(_WORDS) for _ in range(r.randint(1, 3)))
                    for _ in range(r.randint(1, 3)))
            return "".join(r.choice(_ALPHABET) for _ in range(r.randint(0, 10)))
        if k == "bool":
            return r.random() < 0.5
        if k == "bytes":
            return bytes(r.randint(0, 255) if r.random() < 0.3 else r.randint(97, 122)
                         for _ in range(r.randint(0, 8)))
        if k == "none":
            return None
        if k == "literal":
            return r.choice(a)
        if k == "union":
            return self.sample(r.choice(a), depth)
        if k == "tuple":
            return tuple(self.sample(s, depth + 1) for s in a)
        n = r.randint(0, max(0, self.max_len + 3 * self.small - depth))
        if k == "list":
            return [self.sample(a[0], depth + 1) for _ in range(n)]
        if k == "tuplevar":
            return tuple(self.sample(a[0], depth + 1) for _ in range(n))
        if k in ("set", "frozenset"):
            items = {self.sample(a[0], depth + 1) for _ in range(n)}
            return items if k == "set" else frozenset(items)
        if k == "dict":
            return {self.sample(a[0], depth + 1): self.sample(a[1], depth + 1) for _ in range(n)}
        raise Unsupported(str(spec))


def _unique(values: list) -> list:
    out, seen = [], set()
    for v in values:
        key = to_literal(v)
        if key not in seen:
            seen.add(key)
            out.append(v)
    return out
