"""Simple mutants of a reference solution, and the share of them its unit tests reject.

    for op, program in mutants(problem.solutions[0], problem.entry_point): ...
    stats = kill_rate(problems, ExecutorConfig(workers=2, time_limit_s=1.0))

Operators, each applied at one site of the entry-point function at a time:

* `compare`: a comparison flipped to its negation (< and >=, > and <=, == and !=, in and
  not in, is and is not);
* `add_sub`: + and - swapped (binary operators and augmented assignments);
* `off_by_one`: an integer constant n becomes n + 1;
* `return_none`: `return X` becomes `return None`;
* `and_or`: `and` and `or` swapped.

A mutant is killed when the executor's verdict on it is anything but pass. Some mutants are
equivalent to the original (no test can reject them), so 100% is not expected.
"""

from __future__ import annotations

import ast
import collections
import copy
import random

OPERATORS = ("compare", "add_sub", "off_by_one", "return_none", "and_or")
_FLIP = {ast.Lt: ast.GtE, ast.GtE: ast.Lt, ast.Gt: ast.LtE, ast.LtE: ast.Gt, ast.Eq: ast.NotEq,
         ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot,
         ast.IsNot: ast.Is}
_SWAP = {ast.Add: ast.Sub, ast.Sub: ast.Add}


def _sites(fn: ast.FunctionDef) -> list[tuple[str, int, int]]:
    """(operator, index of the node in ast.walk order, sub-index) of every mutation site."""
    out = []
    doc = fn.body[0].value if ast.get_docstring(fn, clean=False) is not None else None
    for i, node in enumerate(ast.walk(fn)):
        if isinstance(node, ast.Compare):
            out += [("compare", i, j) for j, op in enumerate(node.ops) if type(op) in _FLIP]
        elif isinstance(node, (ast.BinOp, ast.AugAssign)) and type(node.op) in _SWAP:
            out.append(("add_sub", i, 0))
        elif isinstance(node, ast.Constant) and type(node.value) is int and node is not doc:
            out.append(("off_by_one", i, 0))
        elif isinstance(node, ast.Return) and node.value is not None and not (
                isinstance(node.value, ast.Constant) and node.value.value is None):
            out.append(("return_none", i, 0))
        elif isinstance(node, ast.BoolOp):
            out.append(("and_or", i, 0))
    return out


def _apply(fn: ast.FunctionDef, site: tuple[str, int, int]) -> ast.FunctionDef:
    op, index, sub = site
    new = copy.deepcopy(fn)
    node = next(n for i, n in enumerate(ast.walk(new)) if i == index)
    if op == "compare":
        node.ops[sub] = _FLIP[type(node.ops[sub])]()
    elif op == "add_sub":
        node.op = _SWAP[type(node.op)]()
    elif op == "off_by_one":
        node.value += 1
    elif op == "return_none":
        node.value = ast.Constant(None)
    elif op == "and_or":
        node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
    return ast.fix_missing_locations(new)


def mutants(solution: str, entry_point: str, limit: int | None = None,
            rng: random.Random | None = None) -> list[tuple[str, str]]:
    """(operator, mutant program) for each site of `entry_point` (at most `limit`, drawn
    with `rng`); the rest of the program is kept as written."""
    tree = ast.parse(solution)
    fns = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == entry_point]
    if not fns:
        return []
    fn = fns[-1]
    sites = _sites(fn)
    if limit is not None and len(sites) > limit:
        sites = sorted((rng or random.Random(0)).sample(sites, limit))
    lines = solution.splitlines()
    start = min([fn.lineno] + [d.lineno for d in fn.decorator_list])
    before, after = lines[: start - 1], lines[fn.end_lineno:]
    original = ast.unparse(fn)
    out = []
    for site in sites:
        text = ast.unparse(_apply(fn, site))
        if text != original:
            out.append((site[0], "\n".join(before + [text] + after) + "\n"))
    return out


def kill_rate(problems, cfg=None, limit: int | None = 12, seed: int = 0, progress=None) -> dict:
    """Judge every problem's reference and its mutants; the killed shares, overall, per
    operator and per problem. `cfg` is an ExecutorConfig (short limits suit mutants that
    loop forever)."""
    from executor.pool import ExecutorPool
    from executor.records import Solution

    pairs, meta = [], []
    for p in problems:
        if not p.solutions:
            continue
        pairs.append((p, Solution(task_id=p.task_id, completion=p.solutions[0],
                                  sample_id="reference")))
        meta.append((p.task_id, "reference"))
        rng = random.Random(f"{seed}:{p.task_id}")
        for k, (op, prog) in enumerate(mutants(p.solutions[0], p.entry_point, limit, rng)):
            pairs.append((p, Solution(task_id=p.task_id, completion=prog, sample_id=f"{op}:{k}")))
            meta.append((p.task_id, op))
    results: dict[int, object] = {}
    with ExecutorPool(cfg) as pool:
        for idx, res in pool.imap(pairs):
            results[idx] = res
            if progress is not None:
                progress()
    per_op: dict[str, list[int]] = {op: [0, 0] for op in OPERATORS}
    per_problem: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    refs = [0, 0]
    outcomes = collections.Counter()
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
        "problems": len(refs) and refs[1], "reference_pass": refs[0],
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
