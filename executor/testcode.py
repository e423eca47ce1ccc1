"""Rewrites `assert`-format test code so that its verdict is decided outside the program.

The test code (setup plus one code block per unit test, usually one `assert` statement) runs
twice, from two rewritten copies:

* In the sandbox, beside the program, the *probe* copy runs. Every reference to a name the
  program defines (the entry point, `candidate`, helpers such as HumanEval's `poly`) goes
  through `__rltf_prog__(name)`, which records each call into the program: its arguments, its
  result (type-checked by `executor.serialize`, so only plain values pass) or the exception it
  raised. Each `assert E` keeps only the parts of `E` that call into the program ("holes");
  the expected values of the assertion never reach the sandbox.
* In the trusted parent the *judge* copy runs: the same code with every assertion whole, where
  `__rltf_prog__(name)` returns a stub that replays the recorded results (matching each call
  by name and arguments). The parent never runs program code, and every comparison happens
  there, on plain values.

A test passes when the judge copy runs to its end. A call the sandbox did not record, an
assertion whose group of calls is missing, or a false assertion fails it. `random` imported
by test code is a private generator seeded per test on both sides, so both copies draw the
same inputs whatever the program does with its own `random`.

Program names: every name the test code reads without binding it, as in the benchmarks' own
harnesses, where tests run in the program's namespace. A built-in name (`sum`, `max`) is the
program's when the program defines it at its top level: `AssertPlan.for_program` finds such
definitions in the program's text and uses a plan where those names are program names too
(made once per problem and set of names). A name the program defines only dynamically
(`globals()[...] = ...`, `from m import *`) is not seen, and the test then uses the built-in.

Limits: values that non-assert test statements compute (e.g. `expected = ...` before an
assert) are visible in the sandbox; instances of program classes cross structurally (see
`executor.serialize`), so test code may build them, pass them and read their fields, but a
method of one that the test itself calls runs nowhere the judge can see: unjudgeable.
"""

from __future__ import annotations

import ast
import builtins
import re
from dataclasses import dataclass, field

from executor.testnames import ASSERT, JUDGE, PROG, RANDOM, make_random  # noqa: F401
_BUILTIN_NAMES = frozenset(dir(builtins))


class TestCodeError(ValueError):
    """Test code that cannot be parsed or rewritten."""


_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_IMPORTS = (ast.Import, ast.ImportFrom)
_SCOPES = (ast.Global, ast.Nonlocal)


def _names(trees: list[ast.AST]) -> tuple[set[str], set[str]]:
    """(bound, read) names of setup and test code, in one walk. Bound: every name the code
    binds anywhere (assignment, loop, import, def, argument...); read: every name it loads."""
    bound: set[str] = set()
    read: set[str] = set()
    name_t, load_t, arg_t = ast.Name, ast.Load, ast.arg
    for tree in trees:
        for node in ast.walk(tree):
            t = type(node)
            if t is name_t:
                (read if type(node.ctx) is load_t else bound).add(node.id)
            elif t is arg_t:
                bound.add(node.arg)
            elif isinstance(node, _DEFS):
                bound.add(node.name)
            elif isinstance(node, _IMPORTS):
                for alias in node.names:
                    bound.add((alias.asname or alias.name).split(".")[0])
            elif isinstance(node, ast.ExceptHandler) and node.name:
                bound.add(node.name)
            elif isinstance(node, _SCOPES):
                bound.update(node.names)
            elif isinstance(node, ast.MatchAs) and node.name:
                bound.add(node.name)
    return bound, read


def _at(ref: ast.AST, node):
    """`node`, a new node, placed where `ref` is (compile needs every node located)."""
    node.lineno, node.col_offset = ref.lineno, ref.col_offset
    node.end_lineno, node.end_col_offset = ref.end_lineno, ref.end_col_offset
    return node


def _prog_call(name: str, ref: ast.AST) -> ast.Call:
    return _at(ref, ast.Call(func=_at(ref, ast.Name(PROG, ast.Load())),
                             args=[_at(ref, ast.Constant(name))], keywords=[]))


def _mentions(node: ast.AST, prog: set[str]) -> bool:
    cached = getattr(node, "_rltf_mentions", None)
    if cached is None:
        cached = (isinstance(node, ast.Name) and node.id in prog
                  and isinstance(node.ctx, ast.Load)) or any(
            _mentions(c, prog) for c in ast.iter_child_nodes(node))
        node._rltf_mentions = cached  # type: ignore[attr-defined]
    return cached


_WHOLE = (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp,
          ast.NamedExpr, ast.Await, ast.Yield, ast.YieldFrom)


def _dotted(node: ast.AST) -> bool:
    """A dotted name: `a.b`, `a.b.c`."""
    while isinstance(node, ast.Attribute):
        node = node.value
    return isinstance(node, ast.Name)


def _holes(node: ast.AST, prog: set[str]) -> list[ast.expr]:
    """Maximal parts of an assertion that call into the program, in evaluation order."""
    if not _mentions(node, prog):
        return []
    if isinstance(node, ast.Name) or _dotted(node):  # `f`, `Colour.RED`, `m.CONST`
        return [node]
    if isinstance(node, ast.Call) and _mentions(node.func, prog):
        return [node]
    if isinstance(node, ast.GeneratorExp):  # force it, or nothing would be called
        return [_at(node, ast.Call(_at(node, ast.Name("list", ast.Load())), [node], []))]
    if isinstance(node, _WHOLE):
        return [node]
    out: list[ast.expr] = []
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.expr_context):
            continue
        out.extend(_holes(child, prog))
    return out


class _Rewrite(ast.NodeTransformer):
    """Program names -> __rltf_prog__("name"); `random` imports -> the private generator;
    asserts -> probe or judge calls (numbered sites)."""

    def __init__(self, prog: set[str], mode: str, site_start: int):
        self.prog = prog
        self.mode = mode  # "probe" | "judge" | "setup"
        self.site = site_start
        self.uses_random = False  # whether it turned an import of `random` into RANDOM

    def visit(self, node):
        # An expression that names nothing of the program holds nothing to rewrite (imports
        # and assertions are statements): skip its subtree, most of a typical test's nodes.
        if isinstance(node, ast.expr) and not _mentions(node, self.prog):
            return node
        return super().visit(node)

    def visit_Name(self, node: ast.Name):
        if isinstance(node.ctx, ast.Load) and node.id in self.prog:
            return _prog_call(node.id, node)
        return node

    def visit_Import(self, node: ast.Import):
        keep, extra = [], []
        for alias in node.names:
            if alias.name == "random":
                self.uses_random = True
                extra.append(_at(node, ast.Assign(
                    [_at(node, ast.Name(alias.asname or "random", ast.Store()))],
                    _at(node, ast.Name(RANDOM, ast.Load())))))
            else:
                keep.append(alias)
        out: list[ast.stmt] = ([_at(node, ast.Import(keep))] if keep else []) + extra
        return out or _at(node, ast.Pass())

    def visit_ImportFrom(self, node: ast.ImportFrom):
        if node.module != "random" or node.level:
            return node
        out = []
        self.uses_random = True
        for alias in node.names:
            if alias.name == "*":
                raise TestCodeError("`from random import *` in test code is not supported")
            out.append(_at(node, ast.Assign(
                [_at(node, ast.Name(alias.asname or alias.name, ast.Store()))],
                _at(node, ast.Attribute(_at(node, ast.Name(RANDOM, ast.Load())), alias.name,
                                        ast.Load())))))
        return out

    def visit_Assert(self, node: ast.Assert):
        if self.mode == "setup":
            return self.generic_visit(node)
        site = self.site
        self.site += 1
        if self.mode == "probe":
            holes = [self.visit(h) for h in _holes(node.test, self.prog)]
            name = ASSERT
            args = [_at(node, ast.Constant(site))] + [
                _at(node, ast.Lambda(_no_args(), h)) for h in holes]
        else:
            name = JUDGE
            args = [_at(node, ast.Constant(site)),
                    _at(node, ast.Lambda(_no_args(), self.visit(node.test)))]
        call = _at(node, ast.Call(_at(node, ast.Name(name, ast.Load())), args, []))
        return _at(node, ast.Expr(call))


def _no_args() -> ast.arguments:
    return ast.arguments(posonlyargs=[], args=[], vararg=None, kwonlyargs=[], kw_defaults=[],
                         kwarg=None, defaults=[])


def _parse(src: str, what: str) -> ast.Module:
    try:
        return ast.parse(src)
    except SyntaxError as err:
        raise TestCodeError(f"{what} is not valid Python: {err.msg} (line {err.lineno})") from None


_BINDERS: dict[str, re.Pattern] = {}


def _binds_at_top(program: str, name: str) -> bool:
    """Whether `program` binds `name` at its top level (def, class, assignment, import, for)."""
    pattern = _BINDERS.get(name)
    if pattern is None:
        n = re.escape(name)
        pattern = _BINDERS[name] = re.compile(
            rf"^(?:(?:async\s+)?def|class)\s+{n}\b|^{n}\s*(?:=(?!=)|:|,)|"
            rf"^(?:from\s+[\w.]+\s+)?import\b[^\n#]*\b{n}\b|^for\b[^\n]*\b{n}\b",
            re.MULTILINE)
    return pattern.search(program) is not None


@dataclass
class AssertPlan:
    """Both rewritten copies of an assert-format problem's test code, compiled here: the probe
    copy as one marshalled blob (it is sent to the sandbox), the judge copy as code objects
    (it runs here)."""

    probe_codes: bytes = field(repr=False)  # marshal of {"setup": code, k: code}
    judge_codes: dict = field(default_factory=dict, repr=False)  # k (None: setup) -> code
    program_names: list[str] = field(default_factory=list)
    uses_random: bool = True  # whether the test code imports `random` (a private generator)
    # Built-in names the test code reads without binding them: a program may redefine them.
    builtin_reads: tuple[str, ...] = ()

    def judge_code(self, k: int | None):
        """The compiled judge copy of test k (None: the setup)."""
        return self.judge_codes[k]

    def shadowed_by(self, program: str) -> frozenset[str]:
        """The built-in names of `builtin_reads` that `program` defines at its top level."""
        return frozenset(n for n in self.builtin_reads
                         if n in program and _binds_at_top(program, n))


def _compile_tree(tree: ast.Module, filename: str, what: str):
    try:  # every node the rewrite makes is located, so the tree compiles as it is
        return compile(tree, filename, "exec")
    except (TypeError, ValueError):
        try:
            return compile(ast.unparse(tree), filename, "exec")
        except SyntaxError as err:
            raise TestCodeError(f"{what} does not compile: {err.msg}") from None
    except SyntaxError as err:  # parses, but does not compile: `yield` outside a function
        raise TestCodeError(f"{what} does not compile: {err.msg} (line {err.lineno})") from None


def plan_assert_tests(setup: str | None, tests: list[str],
                      shadowed: frozenset[str] = frozenset()) -> AssertPlan:
    """Rewrite setup and tests into the probe (sandbox) and judge (parent) copies. Built-in
    names in `shadowed` are taken as the program's (see `AssertPlan.for_program`)."""
    import marshal

    setup_tree = _parse(setup or "", "setup code")
    test_trees = [_parse(t, f"test {i}") for i, t in enumerate(tests)]
    bound, read = _names([setup_tree, *test_trees])
    free = read - bound
    builtin_reads = tuple(sorted(free & _BUILTIN_NAMES))
    prog = {name for name in free if name not in _BUILTIN_NAMES or name in shadowed}

    sites, uses_random = 0, False
    probe_codes: dict = {}
    judge_codes: dict = {}
    for k, (src, tree) in enumerate(zip(tests, test_trees)):
        # The parsed tree becomes the probe copy; a second parse becomes the judge copy. Both
        # number the test's assertions from `sites` on.
        probe = _Rewrite(prog, "probe", sites)
        probe_codes[k] = _compile_tree(probe.visit(tree), "<tests>", f"test {k}")
        judge_tree = _Rewrite(prog, "judge", sites).visit(ast.parse(src))
        judge_codes[k] = _compile_tree(judge_tree, "<tests>", f"test {k}")
        sites = probe.site
        uses_random = uses_random or probe.uses_random
    rewrite = _Rewrite(prog, "setup", 0)
    # The setup runs on both sides, from the same code.
    probe_codes["setup"] = judge_codes[None] = _compile_tree(
        rewrite.visit(setup_tree), "<setup>", "setup code")
    return AssertPlan(
        probe_codes=marshal.dumps(probe_codes),
        judge_codes=judge_codes,
        program_names=sorted(prog),
        uses_random=uses_random or rewrite.uses_random,
        builtin_reads=builtin_reads,
    )
