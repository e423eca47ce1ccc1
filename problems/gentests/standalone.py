"""Standalone programs for `rltf gen-tests`: a top-level function with what it needs.

    ix = ModuleIndex(tree, text, "json.decoder", is_package=False)
    stmts, aliases = closure(ix, index_of_the_def, extra_imports)
    program = render(ix, stmts, aliases)

The program is the function together with the module-level imports, helpers, classes and
constants it needs, found by following the names it reads from module scope (transitively,
with Python's scoping rules); imports are reduced to the names used. `Reject` is raised for a
function that depends on module state (a name not bound at module level, `global`,
`globals()`, module dunders such as `__file__`, a star import) or imports outside the standard
library (beyond `extra_imports`).
"""

from __future__ import annotations

import ast
import builtins
import sys

from problems.gentests.scopes import bindings, imports_in, module_refs

_BUILTINS = frozenset(dir(builtins)) - {"__doc__", "__spec__", "__loader__", "__package__",
                                        "__build_class__", "__import__"}
_MODULE_DUNDERS = {"__file__", "__spec__", "__loader__", "__package__", "__path__",
                   "__cached__", "__doc__", "__all__", "__builtins__", "__dict__"}
STDLIB = frozenset(sys.stdlib_module_names) | {"__future__"}


class ModuleIndex:
    def __init__(self, tree: ast.Module, text: str, module: str, is_package: bool):
        self.tree, self.text, self.module = tree, text, module
        self.lines = text.splitlines()
        self.package = module if is_package else module.rpartition(".")[0]
        self.future = any(isinstance(s, ast.ImportFrom) and s.module == "__future__"
                          and any(a.name == "annotations" for a in s.names) for s in tree.body)
        self.binders: dict[str, list[int]] = {}
        for i, stmt in enumerate(tree.body):
            for name in bindings(stmt):
                self.binders.setdefault(name, []).append(i)

    def absolute(self, node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        parts = self.package.split(".") if self.package else []
        base = parts[: len(parts) - (node.level - 1)] if node.level > 1 else parts
        return ".".join(base + ([node.module] if node.module else []))

    def origin(self, name: str) -> str | None:
        """Where a module-level name comes from: 'typing.List', 'builtins.int', or None."""
        idx = self.binders.get(name)
        if not idx:
            return f"builtins.{name}" if name in _BUILTINS else None
        if len(idx) != 1:
            return None
        stmt = self.tree.body[idx[0]]  # an import, or e.g. `if TYPE_CHECKING:` holding one
        for imp in [stmt] if isinstance(stmt, (ast.Import, ast.ImportFrom)) else imports_in(stmt):
            for a in imp.names:
                if (a.asname or a.name.split(".")[0]) == name:
                    if isinstance(imp, ast.Import):
                        return a.name if a.asname else name
                    return f"{self.absolute(imp)}.{a.name}"
        return None

    def alias(self, name: str) -> ast.expr | None:
        """The value of a module-level alias bound once by `Name = value`, else None."""
        idx = self.binders.get(name)
        if not idx or len(idx) != 1:
            return None
        stmt = self.tree.body[idx[0]]
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and \
                isinstance(stmt.targets[0], ast.Name):
            return stmt.value
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            return stmt.value
        return None

    def source_of(self, stmt: ast.stmt) -> str:
        start = min([stmt.lineno] + [d.lineno for d in getattr(stmt, "decorator_list", [])])
        return "\n".join(self.lines[start - 1: stmt.end_lineno])


class Reject(Exception):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(reason)
        self.reason, self.detail = reason, detail


def _import_allowed(name: str, extra: frozenset[str]) -> bool:
    top = name.split(".")[0]
    return top in STDLIB or top in extra


def closure(ix: ModuleIndex, first: int, extra: frozenset[str]
             ) -> tuple[set[int], dict[int, list[ast.alias]]]:
    """Top-level statements and import aliases that statement `first` needs, transitively."""
    stmts: set[int] = set()
    aliases: dict[int, list[ast.alias]] = {}
    todo: list[str] = []
    seen: set[str] = set()
    queue = [first]
    while todo or queue:
        while queue:
            i = queue.pop()
            if i in stmts:
                continue
            stmts.add(i)
            stmt = ix.tree.body[i]
            for imp in imports_in(stmt):
                mod = ix.absolute(imp) if isinstance(imp, ast.ImportFrom) else None
                for name in ([mod] if mod is not None else [a.name for a in imp.names]):
                    if not _import_allowed(name, extra):
                        raise Reject("imports outside the standard library", name)
            refs, declared = module_refs(stmt, ix.future)
            if declared:
                raise Reject("depends on module state", f"global {', '.join(sorted(declared))}")
            todo.extend(sorted(refs, reverse=True))  # popped in sorted order
        if not todo:
            break
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in _MODULE_DUNDERS or name == "globals":
            raise Reject("depends on module state", f"uses {name}")
        idx = ix.binders.get(name)
        if not idx:
            if name in _BUILTINS:
                continue
            raise Reject("depends on module state", f"name {name!r} is not bound at module level")
        for i in idx:
            stmt = ix.tree.body[i]
            if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                for a in stmt.names:
                    if (a.asname or a.name.split(".")[0]) == name:
                        mod = ix.absolute(stmt) if isinstance(stmt, ast.ImportFrom) else a.name
                        if not _import_allowed(mod, extra):
                            raise Reject("imports outside the standard library", mod)
                        if a.name == "*":
                            raise Reject("depends on module state", "star import")
                        if a not in aliases.setdefault(i, []):
                            aliases[i].append(a)
            else:
                queue.append(i)
    return stmts, aliases


def render(ix: ModuleIndex, stmts: set[int], aliases: dict[int, list[ast.alias]]) -> str:
    blocks: list[tuple[bool, str]] = []
    if ix.future:
        blocks.append((True, "from __future__ import annotations"))
    for i in sorted(set(stmts) | set(aliases)):
        if i in aliases:
            stmt = ix.tree.body[i]
            names = [a for a in stmt.names if a in aliases[i]]  # in the order written
            if isinstance(stmt, ast.Import):
                new: ast.stmt = ast.Import(names=names)
            else:
                new = ast.ImportFrom(module=ix.absolute(stmt), names=names, level=0)
            blocks.append((True, ast.unparse(new)))
        if i in stmts:
            blocks.append((False, ix.source_of(ix.tree.body[i])))
    out = ""
    for k, (is_import, src) in enumerate(blocks):
        if k:
            out += "\n" if is_import and blocks[k - 1][0] else "\n\n\n"
        out += src
    return out + "\n"
