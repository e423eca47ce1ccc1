"""Mutants of a reference solution: small faults its unit tests should notice.

    for m in mutants(problem.solutions[0], problem.entry_point): m.id, m.op, m.program
    stats = kill_rate(problems, ExecutorConfig(workers=2, time_limit_s=1.0))

Each mutant changes one site of the entry-point function (the rest of the program is kept as
written). Operators:

* `compare`: a comparison negated (< and >=, > and <=, == and !=, in and not in, is and
  is not);
* `boundary`: a strict comparison made non-strict or back (< and <=, > and >=);
* `off_by_one`: an integer constant n becomes n + 1, and (a second mutant) n - 1;
* `arith`: an arithmetic operator swapped (+ and -, * and //, / and *, // and /, % and //),
  in expressions and augmented assignments;
* `and_or`: `and` and `or` swapped;
* `return_none`: `return X` becomes `return None`;
* `drop_branch`: an `if` loses its body (what remains is its `else`, or nothing), or, when it
  has an `else` (or `elif`), loses that.

A mutant's id (`op:site:variant`) depends only on the program text, so the generator, its
report and the benchmark name the same mutant the same way. A mutant is killed when the
executor's verdict on it is anything but pass. Some mutants are equivalent to the original
(no test can reject them), so 100% is not expected.
"""

from __future__ import annotations

import ast
import collections
import copy
import random
from dataclasses import dataclass

OPERATORS = ("compare", "boundary", "off_by_one", "arith", "and_or", "return_none",
             "drop_branch")
_FLIP = {ast.Lt: ast.GtE, ast.GtE: ast.Lt, ast.Gt: ast.LtE, ast.LtE: ast.Gt, ast.Eq: ast.NotEq,
         ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot,
         ast.IsNot: ast.Is}
_BOUNDARY = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt}
_ARITH = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.FloorDiv, ast.Div: ast.Mult,
          ast.FloorDiv: ast.Div, ast.Mod: ast.FloorDiv}


@dataclass(frozen=True)
class Mutant:
    id: str  # "op:site:variant"
    op: str
    program: str  # the whole program with the mutated function
    function: str = ""  # the mutated function's definition alone


def _sites(fn: ast.FunctionDef) -> list[tuple[str, int, int]]:
    """(operator, index of the node in ast.walk order, variant) of every mutation site."""
    out = []
    doc = fn.body[0].value if ast.get_docstring(fn, clean=False) is not None else None
    for i, node in enumerate(ast.walk(fn)):
        if isinstance(node, ast.Compare):
            for j, op in enumerate(node.ops):
                if type(op) in _FLIP:
                    out.append(("compare", i, j))
                if type(op) in _BOUNDARY:
                    out.append(("boundary", i, j))
        elif isinstance(node, (ast.BinOp, ast.AugAssign)) and type(node.op) in _ARITH:
            out.append(("arith", i, 0))
        elif isinstance(node, ast.Constant) and type(node.value) is int and node is not doc:
            out += [("off_by_one", i, 0), ("off_by_one", i, 1)]
        elif isinstance(node, ast.Return) and node.value is not None and not (
                isinstance(node.value, ast.Constant) and node.value.value is None):
            out.append(("return_none", i, 0))
        elif isinstance(node, ast.BoolOp):
            out.append(("and_or", i, 0))
        elif isinstance(node, ast.If):
            out.append(("drop_branch", i, 0))
            if node.orelse:
                out.append(("drop_branch", i, 1))
    return out


class _DropIf(ast.NodeTransformer):
    def __init__(self, target: ast.If, variant: int):
        self.target, self.variant = target, variant

    def visit_If(self, node: ast.If):
        if node is not self.target:
            return self.generic_visit(node)
        if self.variant == 1:  # the else goes
            node.orelse = []
            return node
        return node.orelse or ast.Pass()  # the body goes: what remains is the else


def _apply(fn: ast.FunctionDef, site: tuple[str, int, int]) -> ast.FunctionDef:
    op, index, sub = site
    new = copy.deepcopy(fn)
    node = next(n for i, n in enumerate(ast.walk(new)) if i == index)
    if op == "compare":
        node.ops[sub] = _FLIP[type(node.ops[sub])]()
    elif op == "boundary":
        node.ops[sub] = _BOUNDARY[type(node.ops[sub])]()
    elif op == "arith":
        node.op = _ARITH[type(node.op)]()
    elif op == "off_by_one":
        node.value += 1 if sub == 0 else -1
    elif op == "return_none":
        node.value = ast.Constant(None)
    elif op == "and_or":
        node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
    elif op == "drop_branch":
        new = _DropIf(node, sub).visit(new)
    return ast.fix_missing_locations(new)


def mutants(solution: str, entry_point: str, limit: int | None = None,
            rng: random.Random | None = None) -> list[Mutant]:
    """Mutants of `entry_point`, one per site (at most `limit`, drawn with `rng`), in site
    order; mutants whose text equals the original's are left out."""
    tree = ast.parse(solution)
    fns = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == entry_point]
    if not fns:
        return []
    fn = fns[-1]
    sites = _sites(fn)
    if limit is not None and len(sites) > limit:
        sites = sorted((rng or random.Random(0)).sample(sites, limit),
                       key=lambda s: (s[1], s[2], s[0]))
    lines = solution.splitlines()
    start = min([fn.lineno] + [d.lineno for d in fn.decorator_list])
    before, after = lines[: start - 1], lines[fn.end_lineno:]
    original = ast.unparse(fn)
    out = []
    for site in sites:
        text = ast.unparse(_apply(fn, site))
        if text != original:
            out.append(Mutant(f"{site[0]}:{site[1]}:{site[2]}", site[0],
                              "\n".join(before + [text] + after) + "\n", text + "\n"))
    return out


BUNDLE_FN = "__rltf_mutant__"
SKIPPED = "MutantSkipped"
_BUNDLE = '''

class MutantSkipped(Exception):
    """The mutant timed out or crashed on an earlier input of this run: not run again."""


def __rltf_mutant__(__k, __i, /, *args, **kwargs):
    import copy as _copy

    state = __rltf_bundle__
    if state["first"]:
        state["first"] = False
        if __i > 0:  # this process started after mutant __k's input __i - 1 ended abnormally
            state["dead"].add(__k)
    if __k in state["dead"]:
        raise MutantSkipped(__k)
    fn = state["fns"].get(__k)
    if fn is None:
        ns = {n: _copy.deepcopy(v) if type(v) in (list, dict, set) else v
              for n, v in globals().items()}
        exec(compile(state["src"][__k], "<mutant>", "exec"), ns)
        fn = state["fns"][__k] = ns[state["entry"]]
    return fn(*args, **kwargs)
'''


def bundle(solution: str, entry_point: str, group: list[Mutant]) -> str:
    """One program that runs several mutants: `__rltf_mutant__(k, i, *args)` calls mutant k
    (its i-th input) in a copy of the program's globals (mutable ones copied deeply), so a
    recursive mutant calls itself. Inputs go mutant by mutant, in order: a process that
    starts in the middle of a mutant's inputs follows one that timed out or crashed on it,
    and that mutant's remaining calls raise MutantSkipped at once."""
    state = {"first": True, "dead": set(), "fns": {}, "entry": entry_point,
             "src": [m.function for m in group]}
    return (solution.rstrip("\n") + "\n" + _BUNDLE +
            f"\n\n__rltf_bundle__ = {state!r}\n")


def kill_rate(problems, cfg=None, limit: int | None = 12, seed: int = 0, progress=None) -> dict:
    """Judge every problem's reference and its mutants; the killed shares, overall, per
    operator and per problem. `cfg` is an ExecutorConfig (short limits suit mutants that
    loop forever)."""
    from executor.pool import ExecutorPool
    from core.records import Solution

    pairs, meta = [], []
    for p in problems:
        if not p.solutions:
            continue
        pairs.append((p, Solution(task_id=p.task_id, completion=p.solutions[0],
                                  sample_id="reference")))
        meta.append((p.task_id, "reference"))
        rng = random.Random(f"{seed}:{p.task_id}")
        for m in mutants(p.solutions[0], p.entry_point, limit, rng):
            pairs.append((p, Solution(task_id=p.task_id, completion=m.program, sample_id=m.id)))
            meta.append((p.task_id, m.op))
    results: dict[int, object] = {}
    with ExecutorPool(cfg) as pool:
        for idx, res in pool.imap(pairs):
            results[idx] = res
            if progress is not None:
                progress()
    per_op: dict[str, list[int]] = {op: [0, 0] for op in OPERATORS}
    per_problem: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    refs = [0, 0]
    outcomes: collections.Counter = collections.Counter()
    for i, (task_id, op) in enumerate(meta):
        r = results[i]
        if op == "reference":
            refs[0] += r.outcome == "pass"
            refs[1] += 1
            continue
        killed = r.outcome != "pass"
        outcomes[r.outcome] += 1
        per_op[op][0] += killed
        per_op[op][1] += 1
        per_problem[task_id][0] += killed
        per_problem[task_id][1] += 1
    killed = sum(k for k, _ in per_op.values())
    total = sum(n for _, n in per_op.values())
    rates = [k / n for k, n in per_problem.values() if n]
    return {
        "problems": refs[1], "reference_pass": refs[0],
        "reference_pass_rate": refs[0] / refs[1] if refs[1] else None,
        "mutants": total, "killed": killed, "kill_rate": killed / total if total else None,
        "by_operator": {op: {"mutants": n, "killed": k, "kill_rate": k / n if n else None}
                        for op, (k, n) in per_op.items()},
        "mutant_outcomes": dict(outcomes),
        "problems_with_mutants": len(rates),
        "mean_problem_kill_rate": sum(rates) / len(rates) if rates else None,
        "problems_killing_most": sum(r > 0.5 for r in rates),
        "problems_killing_all": sum(r == 1.0 for r in rates),
    }
