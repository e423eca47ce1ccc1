"""Type specs for `rltf gen-tests`: a function's annotations (and simple defaults) as `Spec`s.

    spec = parse_annotation(ast.parse("list[int] | None", mode="eval").body, resolve)

Supported: int, float, str, bool, bytes, None; list/Sequence/Iterable/Collection[...] (a list
is generated), dict/Mapping[...], tuple[...] (fixed and `tuple[X, ...]`), set/frozenset[...],
Optional[...], Union[...], `X | None`, Literal[...]; `typing.List` etc. spellings through any
import alias; string annotations. Bare `list`, `dict`, `tuple`, `set` get int (str keys) items.
Anything else (Any, object, Callable, classes, TypeVars) is unsupported. Sets of strings (or of
anything whose hash varies between processes) are unsupported too: the assert judge matches
recorded calls by their encoded arguments, and such a set's order differs between the sandbox
and the judge. Values for specs are `inputs.py`'s.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any, Callable


class Unsupported(ValueError):
    """An annotation the generator cannot produce values for."""


@dataclass(frozen=True)
class Spec:
    """A type: kind in int float str bool bytes none list dict tuple tuplevar set frozenset
    union literal; `args` holds element specs (or literal values)."""

    kind: str
    args: tuple = ()

    def __str__(self) -> str:
        if self.kind == "literal":
            return f"Literal[{', '.join(map(repr, self.args))}]"
        if self.kind == "union":
            return " | ".join(map(str, self.args))
        if self.kind == "tuplevar":
            return f"tuple[{self.args[0]}, ...]"
        if self.args:
            return f"{self.kind}[{', '.join(map(str, self.args))}]"
        return "None" if self.kind == "none" else self.kind


SCALARS = {"int", "float", "str", "bool", "bytes"}
_SEQ = {"list", "List", "Sequence", "MutableSequence", "Iterable", "Collection", "Reversible"}
_MAP = {"dict", "Dict", "Mapping", "MutableMapping"}
_SET = {"set", "Set", "AbstractSet", "MutableSet"}
_TYPING_MODULES = {"typing", "collections.abc", "typing_extensions"}
_TYPING_ONLY = {"Text": "str", "AnyStr": "str"}
INT, STR = Spec("int"), Spec("str")


def _generic(name: str) -> str | None:
    """list/dict/tuple/set/frozenset/optional/union/literal for a qualified name."""
    mod, _, short = name.rpartition(".")
    if mod not in ("builtins", *_TYPING_MODULES):
        return None
    if mod == "builtins" and short not in ("list", "dict", "tuple", "set", "frozenset"):
        return None
    if short in _SEQ:
        return "list"
    if short in _MAP:
        return "dict"
    if short in _SET:
        return "set"
    if short in ("tuple", "Tuple"):
        return "tuple"
    if short in ("frozenset", "FrozenSet"):
        return "frozenset"
    return {"Optional": "optional", "Union": "union", "Literal": "literal"}.get(short)


def _qualname(node: ast.expr, resolve: Callable[[str], str | None]) -> str | None:
    if isinstance(node, ast.Name):
        return resolve(node.id)
    if isinstance(node, ast.Attribute):
        base = _qualname(node.value, resolve)
        return f"{base}.{node.attr}" if base else None
    return None


def _union(parts: list[Spec]) -> Spec:
    flat: list[Spec] = []
    for p in parts:
        for q in (p.args if p.kind == "union" else (p,)):
            if q not in flat:
                flat.append(q)
    return flat[0] if len(flat) == 1 else Spec("union", tuple(flat))


def _bare(kind: str) -> Spec:
    return {"list": Spec("list", (INT,)), "dict": Spec("dict", (STR, INT)),
            "tuple": Spec("tuplevar", (INT,)), "set": Spec("set", (INT,)),
            "frozenset": Spec("frozenset", (INT,))}[kind]


def parse_annotation(node: ast.expr | None, resolve: Callable[[str], str | None],
                     expand: Callable[[str], ast.expr | None] | None = None) -> Spec:
    """The Spec of an annotation; `resolve(name)` gives a name's qualified origin
    ("builtins.int", "typing.List") or None when it is not a known import or builtin;
    `expand(name)` gives the value of a module-level type alias (`Pos = int`) or None."""
    depth = [0]

    def alias(name: str) -> ast.expr | None:
        depth[0] += 1
        return expand(name) if expand is not None and depth[0] < 20 else None

    return _parse(node, resolve, alias)


def _parse(node: ast.expr | None, resolve, alias) -> Spec:
    if isinstance(node, ast.Name) and resolve(node.id) is None:
        target = alias(node.id)
        if target is not None:
            return _parse(target, resolve, alias)
    if node is None:
        raise Unsupported("missing annotation")
    if isinstance(node, ast.Constant):
        if node.value is None:
            return Spec("none")
        if isinstance(node.value, str):
            try:
                inner = ast.parse(node.value.strip(), mode="eval").body
            except SyntaxError:
                raise Unsupported(f"string annotation {node.value!r}") from None
            return _parse(inner, resolve, alias)
        raise Unsupported(f"annotation {ast.unparse(node)}")
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _union([_parse(node.left, resolve, alias), _parse(node.right, resolve, alias)])
    if isinstance(node, ast.Subscript):
        gen = _generic(_qualname(node.value, resolve) or "")
        if gen is None:
            raise Unsupported(f"annotation {ast.unparse(node)}")
        items = list(node.slice.elts) if isinstance(node.slice, ast.Tuple) else [node.slice]
        if gen == "literal":
            if not all(isinstance(i, ast.Constant) for i in items):
                raise Unsupported(f"annotation {ast.unparse(node)}")
            return Spec("literal", tuple(i.value for i in items))
        if gen == "tuple":
            if len(items) == 2 and isinstance(items[1], ast.Constant) and items[1].value is ...:
                return Spec("tuplevar", (_parse(items[0], resolve, alias),))
            if len(items) == 1 and isinstance(items[0], ast.Tuple) and not items[0].elts:
                return Spec("tuple", ())
            return Spec("tuple", tuple(_parse(i, resolve, alias) for i in items))
        specs = [_parse(i, resolve, alias) for i in items]
        if gen == "optional":
            return _union([specs[0], Spec("none")])
        if gen == "union":
            return _union(specs)
        if gen == "dict":
            if len(specs) != 2:
                raise Unsupported(f"annotation {ast.unparse(node)}")
            if not hashable(specs[0]):
                raise Unsupported(f"unhashable dict key in {ast.unparse(node)}")
            return Spec("dict", tuple(specs))
        if len(specs) != 1:
            raise Unsupported(f"annotation {ast.unparse(node)}")
        if gen in ("set", "frozenset") and not set_safe(specs[0]):
            raise Unsupported(f"set of values whose order varies by process: "
                              f"{ast.unparse(node)}")
        return Spec(gen, tuple(specs))
    name = _qualname(node, resolve)
    if name is None:
        raise Unsupported(f"annotation {ast.unparse(node)}")
    mod, _, short = name.rpartition(".")
    if mod == "builtins" and short in SCALARS:
        return Spec(short)
    if mod == "builtins" and short == "None":
        return Spec("none")
    if mod in _TYPING_MODULES and short in _TYPING_ONLY:
        return Spec(_TYPING_ONLY[short])
    gen = _generic(name)
    if gen in ("list", "dict", "tuple", "set", "frozenset"):
        return _bare(gen)
    raise Unsupported(f"annotation {ast.unparse(node)}")


def hashable(spec: Spec) -> bool:
    if spec.kind in ("list", "dict", "set"):
        return False
    if spec.kind in ("tuple", "tuplevar", "union", "frozenset"):
        return all(hashable(a) for a in spec.args)
    return True


def set_safe(spec: Spec) -> bool:
    """Hashable, with a hash that is the same in every process (no str, bytes or None)."""
    if spec.kind in ("int", "float", "bool"):
        return True
    if spec.kind == "literal":
        return all(type(v) in (int, bool) for v in spec.args)
    if spec.kind in ("tuple", "tuplevar", "union"):
        return all(set_safe(a) for a in spec.args)
    return False


def spec_of_default(value: Any) -> Spec | None:
    """The type a simple default value implies (5 -> int), or None."""
    t = type(value)
    if t in (int, float, str, bool, bytes):
        return Spec(t.__name__)
    return None
