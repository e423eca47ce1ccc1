"""Python's scoping rules, statically: which module-level names a top-level statement reads.

    refs, declared_global = module_refs(stmt, future_annotations)

A function reads a module-level name when the name is loaded in its body (or a nested scope's)
and not bound locally there; decorators, defaults and, unless `from __future__ import
annotations` is in force, annotations are read where the `def` runs. Class bodies do not make
names visible to the functions inside them. Comprehensions are their own scopes. The analysis
is conservative the way `rltf gen-tests` needs it: a name it misses makes the standalone
program fail to run, which the sandbox then reports; it never reads files or imports modules.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef, ast.ListComp,
           ast.SetComp, ast.DictComp, ast.GeneratorExp)


@dataclass
class _Scan:
    loads: set = field(default_factory=set)
    stores: set = field(default_factory=set)
    declared_global: set = field(default_factory=set)
    nested: list = field(default_factory=list)


def _outer_parts(node: ast.AST, future: bool) -> list[ast.AST]:
    """Parts of a nested scope evaluated in the enclosing scope."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
        a = node.args
        parts: list = [*a.defaults, *[d for d in a.kw_defaults if d is not None]]
        if not isinstance(node, ast.Lambda):
            parts += node.decorator_list
            if not future:
                args = [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg]
                parts += [x.annotation for x in args if x is not None and x.annotation]
                parts += [node.returns] if node.returns else []
        return parts
    if isinstance(node, ast.ClassDef):
        return [*node.decorator_list, *node.bases, *[k.value for k in node.keywords]]
    return [node.generators[0].iter]  # comprehension


def _scan(nodes: list[ast.AST], future: bool) -> _Scan:
    """Names read and bound in one scope, and the scopes nested in it."""
    s = _Scan()
    stack = list(nodes)
    while stack:
        n = stack.pop()
        if isinstance(n, _SCOPES):
            s.nested.append(n)
            stack.extend(_outer_parts(n, future))
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                s.stores.add(n.name)
            continue
        if isinstance(n, ast.Name):
            (s.loads if isinstance(n.ctx, ast.Load) else s.stores).add(n.id)
        elif isinstance(n, (ast.Import, ast.ImportFrom)):
            for a in n.names:
                s.stores.add((a.asname or a.name).split(".")[0])
        elif isinstance(n, ast.ExceptHandler) and n.name:
            s.stores.add(n.name)
        elif isinstance(n, (ast.MatchAs, ast.MatchStar)) and n.name:
            s.stores.add(n.name)
        elif isinstance(n, ast.Global):
            s.declared_global.update(n.names)
        elif isinstance(n, ast.AnnAssign) and future:
            stack.extend(x for x in (n.target, n.value) if x is not None)
            continue
        elif isinstance(n, ast.arg):
            continue  # annotations of nested arguments are outer parts
        stack.extend(ast.iter_child_nodes(n))
    return s


def _scope_free(node: ast.AST, future: bool) -> tuple[set[str], set[str]]:
    """(names the scope reads from enclosing scopes, names it declares global)."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
        a = node.args
        params = {x.arg for x in [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg]
                  if x is not None}
        body = node.body if isinstance(node.body, list) else [node.body]
    elif isinstance(node, ast.ClassDef):
        params, body = set(), node.body
    else:
        params = set()
        gens = node.generators
        body = [*(x for g in gens for x in (g.target, *g.ifs)), *(g.iter for g in gens[1:])]
        body += [node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt]
    s = _scan(body, future)
    local = (params | s.stores) - s.declared_global
    free = s.loads - local
    declared = set(s.declared_global)
    for inner in s.nested:
        f, d = _scope_free(inner, future)
        free |= f if isinstance(node, ast.ClassDef) else f - local
        declared |= d
    return free, declared


def module_refs(stmt: ast.stmt, future: bool) -> tuple[set[str], set[str]]:
    """(module-level names a top-level statement reads, now or when its functions run;
    names declared global inside it)."""
    s = _scan([stmt], future)
    refs, declared = set(s.loads), set(s.declared_global)
    for inner in s.nested:
        f, d = _scope_free(inner, future)
        refs |= f
        declared |= d
    return refs, declared


def bindings(stmt: ast.stmt) -> set[str]:
    """Names a top-level statement binds at module level."""
    if isinstance(stmt, ast.ImportFrom) and stmt.module == "__future__":
        return set()
    s = _scan([stmt], future=True)
    return s.stores


def imports_in(node: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    return [n for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom))]
