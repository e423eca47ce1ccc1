"""Types of unannotated parameters, from what the code around a function says about them.

    spec = parse_type_phrase("list of int, optional")     # list[int]
    spec = join(spec_of_value([1, 2]), spec_of_value([]))  # list[int]
    resolved = resolve_static(params, sources)             # {name: (spec, "docstring")}

`rltf gen-tests` types each parameter from the first of these sources that says something
(the report records which one, per parameter):

1. `annotation`: the parameter's annotation (`problems.gentests.specs.parse_annotation`);
2. `docstring`: its type in the docstring, in reST, Google, NumPy or epydoc style
   (`problems.gentests.docstrings`), as a Python annotation (`list[int]`, `Optional[str]`) or in
   words (`list of int`, `int or None`, `dict mapping str to int`, `sequence of floats`);
3. `doctest`: the literal arguments of the doctest examples that call the function;
4. `callsite`: the literal arguments of calls of the function elsewhere in the scanned corpus
   (`problems.gentests.callsites`);
5. `default`: its default value (`n=3`: int, `sep=(",", ";")`: tuple of str);
6. `probe`: runtime probing in the sandbox (`problems.gentests.probe_types`).

A parameter whose default is None and whose type comes from another source may also be None.
Observed values of one parameter are joined into one type (1 and 2.5: float; [1] and []:
list[int]; (1, 2) and (1, 2, 3): tuple[int, ...]). Types the input generator cannot produce
(classes, callables, sets of strings) count as unknown, and the next source is tried.
"""

from __future__ import annotations

import ast
import re
from typing import Any

from problems.gentests.specs import Spec, Unsupported, hashable, parse_annotation, set_safe

SOURCES = ("annotation", "docstring", "doctest", "callsite", "default", "probe")
INT, FLOAT, STR, BOOL, BYTES, NONE = (Spec(k) for k in ("int", "float", "str", "bool",
                                                        "bytes", "none"))
NUMBER = Spec("union", (INT, FLOAT))

# -- phrases ---------------------------------------------------------------------------------
_SCALAR_WORDS = {
    "int": INT, "integer": INT, "ints": INT, "integers": INT, "long": INT, "index": INT,
    "str": STR, "string": STR, "strings": STR, "unicode": STR, "text": STR, "char": STR,
    "character": STR, "characters": STR, "chars": STR, "word": STR, "words": STR,
    "float": FLOAT, "floats": FLOAT, "double": FLOAT, "real": FLOAT, "reals": FLOAT,
    "number": NUMBER, "numbers": NUMBER, "numeric": NUMBER,
    "bool": BOOL, "boolean": BOOL, "booleans": BOOL, "bools": BOOL, "flag": BOOL,
    "bytes": BYTES, "bytestring": BYTES, "bytes-like": BYTES, "none": NONE,
}
_CONTAINER_WORDS = {"list": "list", "lists": "list", "sequence": "list", "sequences": "list",
                    "seq": "list", "iterable": "list", "iterables": "list", "collection": "list",
                    "array": "list", "arrays": "list", "tuple": "tuplevar", "tuples": "tuplevar",
                    "set": "set", "sets": "set", "frozenset": "frozenset", "dict": "dict",
                    "dictionary": "dict", "dicts": "dict", "mapping": "dict", "map": "dict"}
_NOISE = {"a", "an", "the", "non-negative", "nonnegative", "positive", "negative", "non-empty",
          "nonempty", "small", "optional", "python", "any", "of", "valid", "single", "one"}
_TYPING = {"List": "typing.List", "Dict": "typing.Dict", "Tuple": "typing.Tuple",
           "Set": "typing.Set", "FrozenSet": "typing.FrozenSet", "Optional": "typing.Optional",
           "Union": "typing.Union", "Sequence": "typing.Sequence", "Iterable": "typing.Iterable",
           "Mapping": "typing.Mapping", "Literal": "typing.Literal"}
_BUILTIN_TYPES = {"int", "float", "str", "bool", "bytes", "list", "dict", "tuple", "set",
                  "frozenset", "None"}


def _resolve_doc_name(name: str) -> str | None:
    if name in _BUILTIN_TYPES:
        return f"builtins.{name}"
    return _TYPING.get(name)


def _words(text: str) -> Spec | None:
    tokens = [t for t in re.split(r"\s+", text.strip().lower()) if t and t not in _NOISE
              or t == "of"]
    if not tokens:
        return None
    if len(tokens) == 1:
        t = tokens[0]
        if t in _SCALAR_WORDS:
            return _SCALAR_WORDS[t]
        return Spec(_CONTAINER_WORDS[t], ()) if t in _CONTAINER_WORDS else None
    head = tokens[0]
    if head in _CONTAINER_WORDS:
        kind = _CONTAINER_WORDS[head]
        rest = tokens[1:]
        if rest and rest[0] in ("of", "from", "mapping"):
            rest = rest[1:]
        if kind == "dict":
            text = " ".join(rest)
            for sep in (" to ", " -> ", " => "):
                if sep in f" {text} ":
                    k, _, v = f" {text} ".partition(sep)
                    key, val = _words(k), _words(v)
                    return Spec("dict", (key, val)) if key and val else None
            return None
        inner = _words(" ".join(rest)) if rest else None
        return Spec(kind, (inner,)) if inner else None
    if len(tokens) == 2 and tokens[1] in _CONTAINER_WORDS and tokens[0] in _SCALAR_WORDS:
        kind = _CONTAINER_WORDS[tokens[1]]  # "int list"
        return None if kind == "dict" else Spec(kind, (_SCALAR_WORDS[tokens[0]],))
    return None


def _split_top(text: str) -> list[str]:
    """Alternatives of a phrase: split on commas, '|' and ' or ' outside brackets."""
    parts, depth, cur = [], 0, ""
    i = 0
    while i < len(text):
        c = text[i]
        depth += c in "[(" and 1 or 0
        depth -= c in "])" and 1 or 0
        if depth == 0 and (c in ",|" or text.startswith(" or ", i)):
            parts.append(cur)
            cur = ""
            i += 4 if text.startswith(" or ", i) else 1
            continue
        cur += c
        i += 1
    return [p.strip() for p in parts + [cur] if p.strip()]


def parse_type_phrase(text: str) -> Spec | None:
    """A docstring's type phrase as a Spec, or None when it names nothing generatable."""
    text = re.sub(r"[`~*]|:class:|:obj:|:py:\w+:", "", text).strip().rstrip(".")
    text = re.sub(r"\(?\bdefault(s| is)?\b.*$", "", text, flags=re.I).strip(" ,;")
    text = re.sub(r",?\s*optional\s*$", "", text, flags=re.I).strip(" ,")
    if not text:
        return None
    try:
        return finalize(parse_annotation(ast.parse(text, mode="eval").body, _resolve_doc_name))
    except (SyntaxError, Unsupported, ValueError, RecursionError):
        pass
    alts = _split_top(text)
    specs = [_words(a) for a in alts]
    if not alts or any(s is None for s in specs):
        return None
    out = None
    for s in specs:
        out = join(out, s)
    return finalize(out)


# -- values ----------------------------------------------------------------------------------
def spec_of_value(v: Any) -> Spec | None:
    """The type a literal value shows (containers with item types; empty ones with none)."""
    t = type(v)
    if v is None:
        return NONE
    if t in (int, float, str, bool, bytes):
        return Spec(t.__name__)
    if t in (list, set, frozenset):
        item = None
        for x in v:
            item = join(item, spec_of_value(x))
            if item is None:
                return None
        kind = {list: "list", set: "set", frozenset: "frozenset"}[t]
        return Spec(kind, (item,) if item else ())
    if t is tuple:
        if not v:
            return Spec("tuplevar", ())
        items = [spec_of_value(x) for x in v]
        if any(s is None for s in items):
            return None
        if len(v) >= 3 and len(set(items)) == 1:
            return Spec("tuplevar", (items[0],))
        return Spec("tuple", tuple(items))
    if t is dict:
        k = val = None
        for key, x in v.items():
            k, val = join(k, spec_of_value(key)), join(val, spec_of_value(x))
            if k is None or val is None:
                return None
        return Spec("dict", (k, val) if k else ())
    return None


def join(a: Spec | None, b: Spec | None) -> Spec | None:
    """One type covering both (None: unknown, so the other)."""
    if a is None or b is None:
        return a or b
    if a == b:
        return a
    if {a, b} == {INT, FLOAT}:
        return FLOAT
    if {a.kind, b.kind} == {"tuple", "tuplevar"} or (a.kind == b.kind == "tuple"
                                                     and len(a.args) != len(b.args)):
        item = None
        for s in (*a.args, *b.args):
            item = join(item, s)
        return Spec("tuplevar", (item,) if item else ())
    same = _join_same(a, b)
    if same is not None:
        return same
    members: list[Spec] = []
    for s in (a, b):
        for m in (s.args if s.kind == "union" else (s,)):
            merged = next(((i, j) for i, x in enumerate(members)
                           if (j := _join_same(x, m)) is not None), None)
            if merged is not None:
                members[merged[0]] = merged[1]
            elif m not in members:
                members.append(m)
    return members[0] if len(members) == 1 else Spec("union", tuple(members))


def _join_same(a: Spec, b: Spec) -> Spec | None:
    """The join of two containers of one kind whose items join without a new union (so
    [1, 2] and ["a"] stay two kinds of list), else None."""
    if a == b:
        return a
    if a.kind != b.kind or a.kind not in ("list", "set", "frozenset", "tuplevar", "dict",
                                          "tuple"):
        return None
    if not a.args or not b.args:
        return a if a.args else b
    if a.kind == "tuple" and len(a.args) != len(b.args):
        return None
    items = tuple(join(x, y) for x, y in zip(a.args, b.args))
    if any(i.kind == "union" and i not in (x, y) for i, x, y in zip(items, a.args, b.args)):
        return None
    return Spec(a.kind, items)


_DEFAULT_ITEMS = {"list": (INT,), "set": (INT,), "frozenset": (INT,), "tuplevar": (INT,),
                  "dict": (STR, INT)}


def finalize(spec: Spec | None) -> Spec | None:
    """A spec the input generator can produce values for (item types filled in), or None."""
    if spec is None:
        return None
    k, a = spec.kind, spec.args
    if k in ("int", "float", "str", "bool", "bytes", "none", "literal"):
        return spec
    if k == "union":
        members = [finalize(m) for m in a]
        if any(m is None for m in members):
            return None
        members = list(dict.fromkeys(members))
        return members[0] if len(members) == 1 else Spec("union", tuple(members[:4]))
    if k in _DEFAULT_ITEMS and not a:
        a = _DEFAULT_ITEMS[k]
    items = tuple(finalize(x) for x in a)
    if any(x is None for x in items):
        return None
    if k in ("set", "frozenset") and not set_safe(items[0]):
        return None
    if k == "dict" and not hashable(items[0]):
        return None
    return Spec(k, items)


def optional(spec: Spec) -> Spec:
    """spec | None."""
    return join(spec, NONE) if NONE not in (spec.args if spec.kind == "union" else (spec,)) \
        else spec


def spec_of_values(values: list) -> Spec | None:
    from problems.gentests.docstrings import NOT_LITERAL

    out = None
    for v in values:
        s = spec_of_value(v) if v is not NOT_LITERAL else None
        if s is None:
            continue  # an expression, or a value of a type the generator cannot make
        out = join(out, s)
    return finalize(out)


# -- one parameter ---------------------------------------------------------------------------
def bind(call, positional: list[str], kwonly: list[str], has_vararg: bool, has_kwarg: bool
         ) -> dict | None:
    """{parameter: argument value} of a Call (NOT_LITERAL values included), or None when the
    call cannot be a call of this signature."""
    if len(call.args) > len(positional) and not has_vararg:
        return None
    out = dict(zip(positional, call.args))
    for k, v in call.kwargs.items():
        if k in out or (k not in positional and k not in kwonly and not has_kwarg):
            return None
        out[k] = v
    return out


def static_type(name: str, phrase: str | None, doctest_values: list, callsite_values: list,
                default: Any, has_default: bool) -> tuple[Spec | None, str | None]:
    """(spec, source) of an unannotated parameter from the docstring's phrase, the values
    doctests and call sites pass it, and its default (`NOT_LITERAL` when not a literal);
    (None, None) when none of them says."""
    from problems.gentests.docstrings import NOT_LITERAL

    found: tuple[Spec | None, str | None] = (None, None)
    for source, get in (("docstring", lambda: parse_type_phrase(phrase) if phrase else None),
                        ("doctest", lambda: spec_of_values(doctest_values)),
                        ("callsite", lambda: spec_of_values(callsite_values)),
                        ("default", lambda: spec_of_values([default]) if has_default
                         and default is not NOT_LITERAL and default is not None else None)):
        spec = get()
        if spec is not None and spec != NONE:
            found = (spec, source)
            break
    if found[0] is not None and has_default and default is None:
        found = (optional(found[0]), found[1])
    return found
