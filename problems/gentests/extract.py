"""Static half of `rltf gen-tests`: find top-level functions and make them standalone.

    found, items = scan_module(text, "json.decoder", path="json/decoder.py", calls=index)
    # items: Candidate (parameters, standalone solution, prompt, dedup key) or Rejected

For each top-level `def` of a module: each parameter's type comes from the first source that
gives one (`problems.gentests.typeinfer`: annotation, docstring, doctest, call sites in the corpus,
default value); parameters still untyped are left for runtime probing in the sandbox. The
doctests and literal call sites that call the function also become its first inputs. Its
standalone program is the function with what it needs from its module
(`problems.gentests.standalone`); its prompt is the `def` line and docstring, HumanEval style,
after the imports its annotations need; its dedup key is its AST with names, docstring,
annotations and constants normalised.

Rejected functions carry a reason: async function, decorated, no parameters, no docstring
(unless `allow_bare`), no annotations / partly annotated (with `infer=False`, which asks for
full annotations), unsupported annotation, returns None (annotated so, or no `return` with a
value and no `yield`), depends on module state (a name not bound at module level, `global`,
`globals()`, module dunders such as `__file__`), imports outside the standard library (beyond
`extra_imports`).
"""

from __future__ import annotations

import ast
import builtins
import copy
import hashlib
from dataclasses import dataclass, field

from problems.gentests.callsites import CallIndex, Names
from problems.gentests.docstrings import NOT_LITERAL, Call, examples, literal, param_type_phrases
from problems.gentests.specs import Spec, Unsupported, parse_annotation
from problems.gentests.standalone import ModuleIndex, Reject, closure, render
from problems.gentests.typeinfer import bind, static_type

_PURE_DECORATORS = {"functools.lru_cache", "functools.cache"}

@dataclass
class Param:
    name: str
    kind: str  # "pos" (positional or keyword) | "kwonly" | "vararg" (items of *args)
    spec: Spec | None  # None: unknown until runtime probing
    has_default: bool
    source: str | None = None  # which source gave the type (problems.gentests.typeinfer.SOURCES)
    values: tuple = ()  # literal values doctests and call sites pass it (edge inputs)


@dataclass
class Candidate:
    task_id: str
    module: str
    name: str
    path: str
    lineno: int
    params: list[Param]
    typed: str  # "annotated": every parameter and the return; "inferred": any other source
    solution: str
    prompt: str
    key: str
    has_docstring: bool
    seeds: list = field(default_factory=list)  # (args, kwargs) of literal doctest/call sites
    doctests: list = field(default_factory=list)  # own doctest Calls with their want text
    raises: frozenset = frozenset()  # built-in exceptions the program raises explicitly

    @property
    def unknown(self) -> list[Param]:
        """Parameters no static source typed."""
        return [p for p in self.params if p.spec is None]

    @property
    def type_sources(self) -> dict[str, str]:
        return {p.name: p.source or "unknown" for p in self.params}


@dataclass
class Rejected:
    task_id: str
    path: str
    lineno: int
    reason: str
    detail: str = ""


# -- one function ----------------------------------------------------------------------------
def _params(fn: ast.FunctionDef, ix: ModuleIndex, infer: bool, own: list[Call],
            elsewhere: list[Call]) -> tuple[list[Param], str]:
    a = fn.args
    positional = [*a.posonlyargs, *a.args]
    pos_defaults = [None] * (len(positional) - len(a.defaults)) + list(a.defaults)
    rows = [(x, "pos", d) for x, d in zip(positional, pos_defaults)]
    rows += [(x, "kwonly", d) for x, d in zip(a.kwonlyargs, a.kw_defaults)]
    if not rows and not (a.vararg and a.vararg.annotation is not None):
        raise Reject("no parameters")
    annotated = [x.annotation is not None for x, _, _ in rows]
    if not infer and not all(annotated):
        raise Reject("partly annotated" if any(annotated) else "no annotations")
    if not infer and fn.returns is None:
        raise Reject("partly annotated", "return annotation")
    names = ([x.arg for x in positional], [x.arg for x in a.kwonlyargs], a.vararg is not None,
             a.kwarg is not None)
    bound_own = [b for b in (bind(c, *names) for c in own) if b is not None]
    bound_else = [b for b in (bind(c, *names) for c in elsewhere) if b is not None]
    phrases = param_type_phrases(ast.get_docstring(fn, clean=True))
    params = []
    for x, kind, default in rows:
        values = [b[x.arg] for b in bound_own + bound_else if x.arg in b]
        if x.annotation is not None:
            try:
                spec = parse_annotation(x.annotation, ix.origin, ix.alias)
            except Unsupported as err:
                raise Reject("unsupported annotation", f"{x.arg}: {err}") from None
            source = "annotation"
        else:
            spec, source = static_type(
                x.arg, phrases.get(x.arg), [b[x.arg] for b in bound_own if x.arg in b],
                [b[x.arg] for b in bound_else if x.arg in b],
                literal(default) if default is not None else NOT_LITERAL, default is not None)
        seen = {repr(v): v for v in reversed(values) if v is not NOT_LITERAL}
        params.append(Param(x.arg, kind, spec, default is not None, source,
                            tuple(reversed(seen.values()))[:8]))
    if a.vararg is not None and a.vararg.annotation is not None:
        try:
            spec = parse_annotation(a.vararg.annotation, ix.origin, ix.alias)
        except Unsupported as err:
            raise Reject("unsupported annotation", f"*{a.vararg.arg}: {err}") from None
        params.append(Param(a.vararg.arg, "vararg", spec, True, "annotation"))
    typed = all(p.source == "annotation" for p in params) and fn.returns is not None
    return params, "annotated" if typed else "inferred"


def _seeds(own: list[Call], elsewhere: list[Call], names: tuple) -> list[tuple[list, dict]]:
    """(args, kwargs) of the calls whose arguments are all literals, doctests first."""
    out, seen = [], set()
    for c in own + elsewhere:
        if c.complete and bind(c, *names) is not None:
            key = repr((c.args, sorted(c.kwargs.items())))
            if key not in seen:
                seen.add(key)
                out.append((list(c.args), dict(c.kwargs)))
    return out[:12]


def _returns_value(fn: ast.FunctionDef) -> bool:
    """Whether the function's own body (not nested functions) returns a value or yields."""
    stack = list(fn.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue
        if isinstance(node, ast.Return) and node.value is not None and not (
                isinstance(node.value, ast.Constant) and node.value.value is None):
            return True
        if isinstance(node, (ast.Yield, ast.YieldFrom)):
            return True
        stack.extend(ast.iter_child_nodes(node))
    return False


def _raised(solution: str) -> frozenset[str]:
    """Built-in exception classes that `raise` statements of the program name."""
    out = set()
    for node in ast.walk(ast.parse(solution)):
        if isinstance(node, ast.Raise) and node.exc is not None:
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(exc, ast.Name) and isinstance(getattr(builtins, exc.id, None), type) \
                    and issubclass(getattr(builtins, exc.id), Exception):
                out.add(exc.id)
    return frozenset(out)


def _check_decorators(fn: ast.FunctionDef, ix: ModuleIndex) -> None:
    for d in fn.decorator_list:
        target = d.func if isinstance(d, ast.Call) else d
        name = None
        if isinstance(target, ast.Name):
            name = ix.origin(target.id)
        elif isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name):
            base = ix.origin(target.value.id)
            name = f"{base}.{target.attr}" if base else None
        if name not in _PURE_DECORATORS:
            raise Reject("decorated", ast.unparse(d))


def _prompt(fn: ast.FunctionDef, ix: ModuleIndex) -> tuple[str, bool]:
    first = fn.body[0]
    lines = ix.lines[fn.lineno - 1: first.lineno - 1]  # the def line(s) as written
    while lines and lines[-1].strip().startswith("#") or lines and not lines[-1].strip():
        lines.pop()
    if not lines or not lines[-1].split("#")[0].rstrip().endswith(":"):
        head = copy.copy(fn)  # a one-line def, or a comment after the colon: rebuild it
        head.decorator_list, head.body = [], [ast.Pass()]
        lines = ast.unparse(head).splitlines()[:-1]
    doc = ast.get_docstring(fn, clean=False)
    if doc is not None:
        lines.append("    " + ast.get_source_segment(ix.text, fn.body[0]))
    names: set[str] = set()
    args = fn.args
    for x in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
        if x is not None and x.annotation is not None:
            names |= {n.id for n in ast.walk(x.annotation) if isinstance(n, ast.Name)}
    if fn.returns is not None:
        names |= {n.id for n in ast.walk(fn.returns) if isinstance(n, ast.Name)}
    aliases: dict[int, list[ast.alias]] = {}
    for name in sorted(names):
        for i in ix.binders.get(name, []):
            stmt = ix.tree.body[i]
            if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                for a in stmt.names:
                    if (a.asname or a.name.split(".")[0]) == name:
                        aliases.setdefault(i, []).append(a)
    header = render(ix, set(), aliases) if (aliases or ix.future) else ""
    sep = "\n\n" if header else ""
    return header + sep + "\n".join(lines) + "\n", doc is not None


class _Normalise(ast.NodeTransformer):
    def __init__(self, fn: ast.FunctionDef):
        a = fn.args
        args = [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg]
        self.names = {x.arg: f"_a{i}" for i, x in enumerate(args) if x is not None}

    def _local(self, name: str) -> str:
        return self.names.setdefault(name, f"_v{len(self.names)}")

    def visit_Name(self, node: ast.Name):
        if isinstance(node.ctx, (ast.Store, ast.Del)) or node.id in self.names:
            node.id = self._local(node.id)
        return node

    def visit_arg(self, node: ast.arg):
        node.arg, node.annotation = self._local(node.arg), None
        return node

    def visit_Constant(self, node: ast.Constant):
        node.value = type(node.value).__name__
        return node


def dedup_key(fn: ast.FunctionDef) -> str:
    """A hash of the function's AST with its name, argument and local names, docstring,
    annotations and constants normalised."""
    node = copy.deepcopy(fn)
    if ast.get_docstring(node, clean=False) is not None:
        node.body = node.body[1:] or [ast.Pass()]
    node.name, node.returns = "_f", None
    node = _Normalise(fn).visit(node)
    return hashlib.sha1(ast.dump(node, annotate_fields=False).encode()).hexdigest()


def _candidate(fn: ast.stmt, ix: ModuleIndex, index: int, task_id: str, path: str,
               infer: bool, extra: frozenset[str], calls: CallIndex | None, names: Names,
               allow_bare: bool) -> Candidate:
    if isinstance(fn, ast.AsyncFunctionDef):
        raise Reject("async function")
    _check_decorators(fn, ix)
    if not fn.args.args and not fn.args.posonlyargs and not fn.args.kwonlyargs and not (
            fn.args.vararg and fn.args.vararg.annotation is not None):
        raise Reject("no parameters")
    if ast.get_docstring(fn, clean=False) is None and not allow_bare:
        raise Reject("no docstring", "kept only with --allow-bare")
    own = [c for _, c in examples(ast.get_docstring(fn, clean=True),
                                  lambda f: True if names.resolve(f) == task_id else None,
                                  where=f"doctest:{task_id}")]
    elsewhere = calls.calls(task_id) if calls is not None else []
    params, typed = _params(fn, ix, infer, own, elsewhere)
    if fn.returns is not None and isinstance(fn.returns, ast.Constant) and fn.returns.value is None:
        raise Reject("returns None")
    if fn.returns is None and not _returns_value(fn):
        raise Reject("returns None", "no return with a value")
    stmts, aliases = closure(ix, index, extra)
    solution = render(ix, stmts, aliases)
    prompt, has_doc = _prompt(fn, ix)
    for what, src in (("solution", solution), ("prompt", prompt + "    pass\n")):
        try:
            compile(src, f"<{what}>", "exec", dont_inherit=True)
        except SyntaxError as err:
            raise Reject("depends on module state", f"{what} does not compile: {err.msg}")
    a = fn.args
    sig = ([x.arg for x in [*a.posonlyargs, *a.args]], [x.arg for x in a.kwonlyargs],
           a.vararg is not None, a.kwarg is not None)
    return Candidate(task_id=task_id, module=ix.module, name=fn.name, path=path,
                     lineno=fn.lineno, params=params, typed=typed, solution=solution,
                     prompt=prompt, key=dedup_key(fn), has_docstring=has_doc,
                     seeds=_seeds(own, elsewhere, sig),
                     doctests=[c for c in own if c.complete and c.want is not None],
                     raises=_raised(solution))


def scan_module(text: str, module: str, path: str = "", is_package: bool = False,
                infer_defaults: bool = True, extra_imports: frozenset[str] = frozenset(),
                calls: CallIndex | None = None, allow_bare: bool = True
                ) -> tuple[int, list[Candidate | Rejected]]:
    """(number of top-level functions, one Candidate or Rejected for each). Only the last
    definition of a name counts; earlier ones are rejected as redefined. `calls` holds the
    corpus's call sites (None: none known); `infer_defaults=False` asks for annotations;
    `allow_bare=False` rejects functions without a docstring."""
    tree = ast.parse(text)
    ix = ModuleIndex(tree, text, module, is_package)
    names = Names(module, is_package, tree)
    fns = [(i, s) for i, s in enumerate(tree.body)
           if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef))]
    last = {s.name: i for i, s in fns}
    out: list[Candidate | Rejected] = []
    for i, fn in fns:
        task_id = f"{module}.{fn.name}" if module else fn.name
        if last[fn.name] != i or len(ix.binders.get(fn.name, [])) > 1:
            out.append(Rejected(task_id, path, fn.lineno, "redefined",
                                "the name is bound more than once"))
            continue
        try:
            out.append(_candidate(fn, ix, i, task_id, path, infer_defaults, extra_imports,
                                  calls, names, allow_bare))
        except Reject as rej:
            out.append(Rejected(task_id, path, fn.lineno, rej.reason, rej.detail))
        except RecursionError:
            out.append(Rejected(task_id, path, fn.lineno, "depends on module state",
                                "too deeply nested to analyse"))
    return len(fns), out
