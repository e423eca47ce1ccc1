"""Calls of each function elsewhere in a scanned corpus, with their literal arguments.

    index = CallIndex()
    index.add_module(text, "pkg.mod", is_package=False)      # every file, before scanning
    index.calls("pkg.util.parse")                            # [Call([...], {...}), ...]

A call counts for a function when its callee resolves to the function's qualified name
(`module.name`): a bare name defined at the top of the same module, a name imported with
`from pkg.util import parse [as p]` (relative imports resolved), or an attribute of an
imported module (`import pkg.util as u; u.parse(...)`). Calls in doctest examples count as
well (doctests run with the module's names, plus the imports the examples make themselves);
those in a function's own docstring are its `doctest` source instead, and are not returned
for it. Calls that unpack arguments (`*xs`, `**kw`) are skipped; at most `per_function`
calls are kept per function, the first found.
"""

from __future__ import annotations

import ast
from collections import defaultdict

from problems.gentests.docstrings import NOT_LITERAL, Call, call_of, examples


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module if is_package else module.rpartition(".")[0]
    parts = package.split(".") if package else []
    if node.level > 1:
        parts = parts[: len(parts) - (node.level - 1)]
    return ".".join(parts + ([node.module] if node.module else []))


class Names:
    """Resolves a callee expression to a qualified name with one module's imports and
    top-level definitions."""

    def __init__(self, module: str, is_package: bool, tree: ast.Module):
        self.module, self.is_package = module, is_package
        self.names: dict[str, str] = {}
        for stmt in tree.body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                self.names[stmt.name] = f"{module}.{stmt.name}" if module else stmt.name
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                self.learn(node)

    def learn(self, node: ast.Import | ast.ImportFrom) -> None:
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.asname:
                    self.names[a.asname] = a.name
                else:
                    top = a.name.split(".")[0]
                    self.names.setdefault(top, top)
        else:
            base = _absolute(self.module, self.is_package, node)
            for a in node.names:
                if a.name != "*":
                    self.names[a.asname or a.name] = f"{base}.{a.name}" if base else a.name

    def copy(self) -> "Names":
        new = object.__new__(Names)
        new.module, new.is_package, new.names = self.module, self.is_package, dict(self.names)
        return new

    def resolve(self, node: ast.expr) -> str | None:
        if isinstance(node, ast.Name):
            return self.names.get(node.id)
        if isinstance(node, ast.Attribute):
            base = self.resolve(node.value)
            return f"{base}.{node.attr}" if base else None
        return None


def _docstring_owners(tree: ast.Module, module: str):
    """(qualified owner, docstring) of the module and of every function and class in it."""
    stack: list[tuple[ast.AST, str]] = [(tree, module)]
    while stack:
        node, qual = stack.pop()
        doc = ast.get_docstring(node, clean=True) if isinstance(
            node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) else None
        if doc:
            yield qual, doc
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                stack.append((child, f"{qual}.{child.name}" if qual else child.name))


class CallIndex:
    """Literal calls by callee, gathered over every module of a corpus."""

    def __init__(self, per_function: int = 32):
        self.per_function = per_function
        self._calls: dict[str, list[Call]] = defaultdict(list)

    def _add(self, target: str, call: Call) -> None:
        bucket = self._calls[target]
        if len(bucket) < self.per_function:
            bucket.append(call)

    def add_module(self, text: str, module: str, is_package: bool = False,
                   tree: ast.Module | None = None) -> None:
        tree = tree if tree is not None else ast.parse(text)
        names = Names(module, is_package, tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                target = names.resolve(node.func)
                if target is not None:
                    call = call_of(node)
                    if call is not None and any(
                            a is not NOT_LITERAL for a in [*call.args, *call.kwargs.values()]):
                        call.where = "code"
                        self._add(target, call)
        for owner, doc in _docstring_owners(tree, module):
            local = names.copy()
            for imp in _example_imports(doc):
                local.learn(imp)
            for target, call in examples(doc, local.resolve, where=f"doctest:{owner}"):
                if target != owner:  # a function's own doctests are its `doctest` source
                    self._add(target, call)

    def calls(self, qualname: str) -> list[Call]:
        """Calls of `qualname` (the doctests of its own docstring are not among them)."""
        return list(self._calls.get(qualname, ()))

    def __len__(self) -> int:
        return sum(map(len, self._calls.values()))


def _example_imports(doc: str) -> list[ast.Import | ast.ImportFrom]:
    """The import statements a docstring's doctest examples make."""
    out = []
    for line in doc.splitlines():
        src = line.strip()
        if src.startswith(">>> ") and ("import " in src):
            try:
                tree = ast.parse(src[4:])
            except SyntaxError:
                continue
            out += [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    return out
