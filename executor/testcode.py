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
assertion whose group of calls is missing, or a false assertion fails it. Limits: values that
non-assert test statements compute (e.g. `expected = ...` before an assert) are visible in the
sandbox; test code that uses instances of program classes cannot be judged (their values do
not serialise). `random` imported by test code is a private generator seeded per test on both
sides, so both copies draw the same inputs whatever the program does with its own `random`.
"""

from __future__ import annotations

import ast
import builtins
import random as _random
import types
from dataclasses import dataclass, field

PROG = "__rltf_prog__"
ASSERT = "__rltf_assert__"
JUDGE = "__rltf_judge__"
RANDOM = "__rltf_random__"
_BUILTIN_NAMES = frozenset(dir(builtins))


class TestCodeError(ValueError):
    """Test code that cannot be parsed or rewritten."""


def _bound_names(trees: list[ast.AST]) -> set[str]:
    """Every name that setup or test code binds anywhere (assignment, loop, import, def...)."""
    names: set[str] = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
                names.add(node.id)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                for alias in node.names:
                    names.add((alias.asname or alias.name).split(".")[0])
            elif isinstance(node, ast.ExceptHandler) and node.name:
                names.add(node.name)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
            elif isinstance(node, (ast.Global, ast.Nonlocal)):
                names.update(node.names)
            elif isinstance(node, ast.MatchAs) and node.name:
                names.add(node.name)
    return names


def _program_names(trees: list[ast.AST], bound: set[str]) -> set[str]:
    found: set[str] = set()
    for tree in trees:
        for node in ast.walk(tree):
            if (isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)
                    and node.id not in bound and node.id not in _BUILTIN_NAMES):
                found.add(node.id)
    return found


def _prog_call(name: str) -> ast.Call:
    return ast.Call(func=ast.Name(PROG, ast.Load()), args=[ast.Constant(name)], keywords=[])


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


def _holes(node: ast.AST, prog: set[str]) -> list[ast.expr]:
    """Maximal parts of an assertion that call into the program, in evaluation order."""
    if not _mentions(node, prog):
        return []
    if isinstance(node, ast.Name):
        return [node]
    if isinstance(node, ast.Call) and _mentions(node.func, prog):
        return [node]
    if isinstance(node, ast.GeneratorExp):  # force it, or nothing would be called
        return [ast.Call(ast.Name("list", ast.Load()), [node], [])]
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

    def visit_Name(self, node: ast.Name):
        if isinstance(node.ctx, ast.Load) and node.id in self.prog:
            return ast.copy_location(_prog_call(node.id), node)
        return node

    def visit_Import(self, node: ast.Import):
        keep, extra = [], []
        for alias in node.names:
            if alias.name == "random":
                extra.append(ast.Assign([ast.Name(alias.asname or "random", ast.Store())],
                                        ast.Name(RANDOM, ast.Load())))
            else:
                keep.append(alias)
        out: list[ast.stmt] = ([ast.Import(keep)] if keep else []) + extra
        return [ast.copy_location(s, node) for s in out] or ast.Pass()

    def visit_ImportFrom(self, node: ast.ImportFrom):
        if node.module != "random" or node.level:
            return node
        out = []
        for alias in node.names:
            if alias.name == "*":
                raise TestCodeError("`from random import *` in test code is not supported")
            out.append(ast.Assign(
                [ast.Name(alias.asname or alias.name, ast.Store())],
                ast.Attribute(ast.Name(RANDOM, ast.Load()), alias.name, ast.Load())))
        return [ast.copy_location(s, node) for s in out]

    def visit_Assert(self, node: ast.Assert):
        if self.mode == "setup":
            return self.generic_visit(node)
        site = self.site
        self.site += 1
        if self.mode == "probe":
            holes = [self.visit(h) for h in _holes(node.test, self.prog)]
            call = ast.Call(ast.Name(ASSERT, ast.Load()),
                            [ast.Constant(site)] + [ast.Lambda(_no_args(), h) for h in holes], [])
        else:
            test = self.visit(node.test)
            call = ast.Call(ast.Name(JUDGE, ast.Load()),
                            [ast.Constant(site), ast.Lambda(_no_args(), test)], [])
        return ast.copy_location(ast.Expr(call), node)


def _no_args() -> ast.arguments:
    return ast.arguments(posonlyargs=[], args=[], vararg=None, kwonlyargs=[], kw_defaults=[],
                         kwarg=None, defaults=[])


def _parse(src: str, what: str) -> ast.Module:
    try:
        return ast.parse(src)
    except SyntaxError as err:
        raise TestCodeError(f"{what} is not valid Python: {err.msg} (line {err.lineno})") from None


@dataclass
class AssertPlan:
    """Both rewritten copies of an assert-format problem's test code, as source text."""

    probe_setup: str
    probe_tests: list[str]
    judge_setup: str
    judge_tests: list[str]
    program_names: list[str] = field(default_factory=list)
    uses_random: bool = True  # whether the test code imports `random` (a private generator)
    _codes: dict = field(default_factory=dict, repr=False)

    def judge_code(self, k: int | None):
        """The compiled judge copy of test k (None: the setup), compiled once."""
        code = self._codes.get(k)
        if code is None:
            src = self.judge_setup if k is None else self.judge_tests[k]
            code = self._codes[k] = compile(src, "<setup>" if k is None else "<tests>", "exec")
        return code


def plan_assert_tests(setup: str | None, tests: list[str]) -> AssertPlan:
    """Rewrite setup and tests into the probe (sandbox) and judge (parent) copies."""
    setup_tree = _parse(setup or "", "setup code")
    test_trees = [_parse(t, f"test {i}") for i, t in enumerate(tests)]
    bound = _bound_names([setup_tree, *test_trees])
    prog = _program_names([setup_tree, *test_trees], bound)

    def rewrite(src: str, mode: str, site: int) -> str:
        return ast.unparse(_Rewrite(prog, mode, site).visit(ast.parse(src)))

    sites, probe_tests, judge_tests = 0, [], []
    for src, tree in zip(tests, test_trees):
        probe_tests.append(rewrite(src, "probe", sites))
        judge_tests.append(rewrite(src, "judge", sites))
        sites += sum(isinstance(n, ast.Assert) for n in ast.walk(tree))
    setup_src = rewrite(setup or "", "setup", 0)
    return AssertPlan(
        probe_setup=setup_src,
        probe_tests=probe_tests,
        judge_setup=setup_src,
        judge_tests=judge_tests,
        program_names=sorted(prog),
        uses_random=any(RANDOM in src for src in [setup_src, *probe_tests]),
    )


class _PrivateRandom(types.ModuleType):
    """A module-like `random` whose functions draw from one private, seeded generator."""

    def __init__(self, seed: object):
        super().__init__("random")
        self._seed = seed
        self._gen = None  # seeded on first use: most tests never draw

    def __getattr__(self, name: str):  # called only for names not set on the instance
        if not name.startswith("_") and name not in ("Random", "SystemRandom"):
            if self._gen is None:
                self._gen = _random.Random(self._seed)
            attr = getattr(self._gen, name, None)
            if callable(attr):
                return attr
        return getattr(_random, name)


def make_random(seed: object) -> types.ModuleType:
    return _PrivateRandom(seed)
