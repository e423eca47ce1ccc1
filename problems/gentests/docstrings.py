"""What a docstring says about a function's parameters: their types and example calls.

    param_type_phrases(doc)   # {"xs": "list of int", "n": "int, optional"}
    examples(doc, resolve)    # doctest calls: [(callee, Call(args, kwargs, want)), ...]

Types are read from the three common styles and epydoc:

* reST / Sphinx: `:param int n: ...`, or `:param n: ...` with `:type n: int`;
* Google: an `Args:` (`Arguments:`, `Parameters:`, `Keyword Args:`) section whose items are
  `name (type): ...` or `name (type, optional): ...`;
* NumPy: a `Parameters` section underlined with dashes, items `name : type` (`a, b : int`);
* epydoc: `@type n: int`.

The phrases are returned as written; `problems.gentests.typeinfer.parse_type_phrase` turns them into
type specs. Doctest examples (`>>> f(3, [1, 2])` followed by its expected output) come from
`doctest.DocTestParser`; an example counts when it calls the function with arguments that are
Python literals (a call whose arguments are not all literals still gives the literal ones).
"""

from __future__ import annotations

import ast
import doctest
import re
from dataclasses import dataclass, field
from typing import Any, Callable

NOT_LITERAL = object()  # an argument written as an expression that is not a literal

_REST = re.compile(r"^\s*:(?:param|parameter|arg|argument|key|keyword)\s+"
                   r"(?:(?P<type>[^:]*?)\s+)?\*{0,2}(?P<name>\w+)\s*:", re.M)
_REST_TYPE = re.compile(r"^\s*[:@]type\s+\*{0,2}(?P<name>\w+)\s*:\s*(?P<type>.+)$", re.M)
_GOOGLE_HEADERS = {"args", "arguments", "parameters", "params", "keyword args",
                   "keyword arguments", "other parameters", "kwargs"}
_GOOGLE_ITEM = re.compile(r"^\*{0,2}(?P<name>\w+)\s*(?:\((?P<type>[^)]*(?:\([^)]*\))?[^)]*)\))?"
                          r"\s*:(?:\s|$)")
_NUMPY_HEADERS = {"parameters", "other parameters", "keyword arguments", "params"}
_NUMPY_ITEM = re.compile(r"^(?P<names>\*{0,2}\w+(?:\s*,\s*\*{0,2}\w+)*)\s*:\s*(?P<type>.*)$")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _google(lines: list[str], out: dict[str, str]) -> None:
    i = 0
    while i < len(lines):
        head = lines[i].strip()
        if head.endswith(":") and head[:-1].strip().lower() in _GOOGLE_HEADERS:
            base = _indent(lines[i])
            item_indent = None
            i += 1
            while i < len(lines):
                line = lines[i]
                if not line.strip():
                    i += 1
                    continue
                ind = _indent(line)
                if ind <= base:
                    break
                if item_indent is None:
                    item_indent = ind
                if ind == item_indent:
                    m = _GOOGLE_ITEM.match(line.strip())
                    if m and m.group("type"):
                        out.setdefault(m.group("name"), m.group("type").strip())
                i += 1
            continue
        i += 1


def _numpy(lines: list[str], out: dict[str, str]) -> None:
    for i in range(len(lines) - 1):
        if lines[i].strip().lower() not in _NUMPY_HEADERS:
            continue
        rule = lines[i + 1].strip()
        if not rule or set(rule) != {"-"}:
            continue
        base = _indent(lines[i])
        for line in lines[i + 2:]:
            if not line.strip():
                continue
            ind = _indent(line)
            if ind < base:
                break
            if ind > base:
                continue  # a description line
            stripped = line.strip()
            if stripped.lower() in _NUMPY_HEADERS | {"returns", "yields", "raises", "see also",
                                                    "notes", "examples", "references"}:
                break
            m = _NUMPY_ITEM.match(stripped)
            if m and m.group("type").strip():
                for name in m.group("names").split(","):
                    out.setdefault(name.strip().lstrip("*"), m.group("type").strip())


def param_type_phrases(doc: str | None) -> dict[str, str]:
    """{parameter name: its type as the docstring writes it}, from any of the styles."""
    if not doc:
        return {}
    out: dict[str, str] = {}
    for m in _REST_TYPE.finditer(doc):
        out.setdefault(m.group("name"), m.group("type").strip())
    for m in _REST.finditer(doc):
        if m.group("type"):
            out.setdefault(m.group("name"), m.group("type").strip())
    lines = doc.expandtabs().splitlines()
    _google(lines, out)
    _numpy(lines, out)
    return out


# -- doctest examples -------------------------------------------------------------------------
@dataclass
class Call:
    """A call written in source or in a doctest: its arguments (literal values, or
    NOT_LITERAL), and for a doctest the expected output as written."""

    args: list
    kwargs: dict
    want: str | None = None
    where: str = ""  # the function or module the call was written in
    meta: dict = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return all(a is not NOT_LITERAL for a in [*self.args, *self.kwargs.values()])


def literal(node: ast.expr) -> Any:
    """The value of a literal expression (negative numbers, containers of literals
    included), or NOT_LITERAL."""
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return NOT_LITERAL


def call_of(node: ast.Call) -> Call | None:
    """The Call a call node makes, or None when it unpacks (`*xs`, `**kw`)."""
    if any(isinstance(a, ast.Starred) for a in node.args) or \
            any(k.arg is None for k in node.keywords):
        return None
    return Call([literal(a) for a in node.args], {k.arg: literal(k.value) for k in node.keywords})


def examples(doc: str | None, resolve: Callable[[ast.expr], Any], where: str = ""
             ) -> list[tuple[Any, Call]]:
    """(callee, Call) of each doctest call whose function `resolve(func_node)` names (not
    None), in order; the want text is kept when the call is the whole example."""
    if not doc or ">>>" not in doc:
        return []
    try:
        found = doctest.DocTestParser().get_examples(doc)
    except ValueError:  # malformed doctest markup
        return []
    out = []
    for ex in found:
        try:
            tree = ast.parse(ex.source)
        except SyntaxError:
            continue
        whole = len(tree.body) == 1 and isinstance(tree.body[0], ast.Expr) and \
            isinstance(tree.body[0].value, ast.Call)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            key = resolve(node.func)
            call = call_of(node) if key is not None else None
            if call is not None:
                call.want = ex.want.rstrip("\n") if whole and node is tree.body[0].value \
                    else None
                call.where = where
                out.append((key, call))
    return out
