"""Argument rows for a candidate function: seeds, edge values, then seeded random values.

    rows = make_inputs(cand, seed=0, n=30)          # [(args, kwargs), ...], distinct
    rows = make_inputs(cand, 0, 6, specs={"x": STR})  # with some parameter types replaced

The order: the literal calls that doctests and call sites make (`cand.seeds`), then rows of
edge values (each parameter's observed literal values first, then its type's edges; row 0
is every parameter's first edge, later rows rotate), then random rows. In random rows an
integer parameter sometimes takes the length of a sequence argument of the same row, or one
less, or an index into it: untyped code often passes a list with its length (`arr, n`), and
such rows reach the loop bounds that random integers miss. Everything depends only on the
seed and the task id.
"""

from __future__ import annotations

import ast
import random

from problems.gentests.inputs import InputGen, harvest_constants

from problems.gentests.literals import Unliteral, to_literal

from problems.gentests.specs import Spec

_SIZED = ("list", "tuplevar", "tuple", "str", "bytes", "dict", "set", "frozenset")


def _sized(value) -> bool:
    return isinstance(value, (list, tuple, str, bytes, dict, set, frozenset))


def _couple(values: list, specs: list[Spec], rng: random.Random) -> list:
    """Some integer arguments replaced by a length (or an index) of another argument."""
    sized = [v for v in values if _sized(v)]
    if not sized:
        return values
    out = list(values)
    for i, spec in enumerate(specs):
        if spec.kind == "int" and rng.random() < 0.35:
            n = len(rng.choice(sized))
            out[i] = rng.choice((n, n, max(n - 1, 0), rng.randint(0, max(n, 0))))
    return out


def make_inputs(cand, seed: int, n: int, specs: dict[str, Spec] | None = None,
                small: bool = False) -> list[tuple[list, dict]]:
    """Up to n distinct (args, kwargs) for `cand` (an extract.Candidate); `specs`
    replaces the types of the parameters it names (runtime probing tries hypotheses so);
    `small` draws random rows only, from tiny domains (`InputGen`'s second chance)."""
    specs = specs or {}
    key = f"{seed}:{cand.task_id}:{sorted(map(str, specs.items()))}" + (":small" if small else "")
    gen = InputGen(random.Random(key), consts=harvest_constants(ast.parse(cand.solution)),
                   small=small)
    fixed = [p for p in cand.params if p.kind != "vararg"]
    types = [specs.get(p.name, p.spec) for p in fixed]
    var = next((p for p in cand.params if p.kind == "vararg"), None)
    edges = [_edge_values(gen, p, t, p.name not in specs) for p, t in zip(fixed, types)]
    rows: list[list] = [[e[(k + j * min(k, 1)) % len(e)] for j, e in enumerate(edges)]
                        for k in range(min(n // 2, max([len(e) for e in edges] + [1])))]
    if small:
        rows = []
    out, seen = [], set()

    def add(args: list, kwargs: dict) -> None:
        try:
            key = to_literal((tuple(args), kwargs))
        except Unliteral:
            return
        if key not in seen and len(out) < n:
            seen.add(key)
            out.append((args, kwargs))

    if not specs and not small:
        for args, kwargs in cand.seeds:
            add(list(args), dict(kwargs))
    attempts = 0
    while len(out) < n and attempts < 20 * n:
        attempts += 1
        use_defaults = False
        if rows:
            values, extra = rows.pop(0), []
        else:
            values = _couple([gen.sample(t) for t in types], types, gen.rng)
            extra = [gen.sample(var.spec) for _ in range(gen.rng.randint(0, 3))] if var else []
            use_defaults = gen.rng.random() < 0.25
        args, kwargs = [], {}
        for p, v in zip(fixed, values):
            if use_defaults and p.has_default:
                continue
            if p.kind == "kwonly":
                kwargs[p.name] = v
            else:  # defaults are trailing, so omitted positionals leave a prefix
                args.append(v)
        if not use_defaults:
            args += extra
        add(args, kwargs)
    return out


def _edge_values(gen: InputGen, param, spec: Spec, observed: bool) -> list:
    values = list(param.values) if observed else []
    return values + [e for e in gen.edges(spec) if not any(
        type(e) is type(v) and e == v for v in values)]
