"""`rltf gen-tests`: unit-test problems generated from plain Python source, run in the sandbox.

    rltf gen-tests --source DIR_OR_FILE [--source ...] --out problems.jsonl [--seed 0]
                   [--per-function 10] [--report report.json] [--workers 2]

The automatic unit-test data of Gorinski et al. (arXiv 2310.13669), for any Python corpus:

1. scan: top-level functions with typed parameters (`problems.gen_extract`), each made
   standalone with the imports, helpers and constants it needs; near-identical functions
   (same normalised AST) are dropped as duplicates;
2. inputs: seeded edge values, the program's own constants and random values, from the
   parameter types (`problems.gen_inputs`), `pool_factor` times more than tests are kept;
3. record: the original function runs on them in the executor's sandbox and the returned
   values come back (`executor.probe`), with side effects and line coverage watched; inputs
   that raise, time out or return values that do not serialise are dropped; a function that
   loads badly, has side effects, keeps too few inputs, or returns one value for every input
   is dropped; of the rest, `per_function` inputs are chosen for coverage and distinct
   outputs (`problems.gen_select`);
4. repeat: the kept inputs run again, in reverse order, on another fork-server (another
   string-hash seed); a function whose results change is dropped as nondeterministic;
5. write: one `assert`-format problem per function (`assert candidate(3, [1, 2]) == 5`, one
   assert a test, `prompt` = `starter_code` = imports + `def` line + docstring, `solutions` =
   the standalone original), then its reference is judged against its tests by the executor
   and any that does not pass every test is dropped.

The report (JSON) counts functions found, kept, and dropped by reason, inputs dropped by
cause, the reference pass rate and the wall time of each phase. Differences from the paper:
the paper generates tests for existing problems' reference programs; here any typed function
becomes a problem, and types may be inferred from simple default values (`--no-infer` turns
that off).
"""

from __future__ import annotations

import argparse
import ast
import collections
import fnmatch
import json
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from executor.probe import ProbeJob, record_many
from executor.records import Problem, Solution, write_jsonl
from problems.gen_extract import Candidate, Rejected, scan_module
from problems.gen_inputs import InputGen, Unliteral, harvest_constants, to_literal
from problems.gen_select import compare_rerun, select_inputs

DEFAULT_EXCLUDES = ("*/site-packages/*", "*/test/*", "*/tests/*", "*/testing/*",
                    "*/__pycache__/*", "*/idlelib/*", "*/turtledemo/*", "*/tkinter/*",
                    "*/ensurepip/*", "*/config-3*", "*/lib2to3/*", "*/_vendor/*",
                    "*/vendored/*", "*/_distutils/*", "*/test_*.py", "*/conftest.py")


@dataclass
class GenSettings:
    """Settings of one generation run; each documented once, here."""

    seed: int = 0                 # seeds every input draw (with the task id)
    per_function: int = 10        # most tests a problem keeps
    pool_factor: int = 3          # inputs tried per test kept; the kept ones are chosen
                                  # for line coverage and distinct outputs
    min_tests: int = 3            # fewer surviving inputs than this drops the function
    infer_defaults: bool = True   # type untyped parameters from simple default values
    extra_imports: frozenset = frozenset()  # top-level packages allowed besides the stdlib
    time_limit_s: float = 1.0     # per-input limit while recording (exec's default is 4 s)
    workers: int = 2              # fork-servers (at least 2, for the determinism rerun)
    isolation: str = "auto"       # executor.isolation of the fork-servers
    max_test_chars: int = 1000    # a longer assert statement is dropped as an input
    limit: int | None = None      # stop after this many candidates (quick looks)


@dataclass
class GenReport:
    """What a run found, kept and dropped (with the reason for each function dropped)."""

    sources: list[str] = field(default_factory=list)
    files_scanned: int = 0
    files_unparseable: int = 0
    functions_found: int = 0
    kept: int = 0
    dropped: collections.Counter = field(default_factory=collections.Counter)
    dropped_functions: list[dict] = field(default_factory=list)
    inputs: collections.Counter = field(default_factory=collections.Counter)
    timings_s: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    def drop(self, task_id: str, reason: str, detail: str = "", path: str = "", line: int = 0):
        self.dropped[reason] += 1
        self.dropped_functions.append({"task_id": task_id, "reason": reason,
                                       "detail": detail[:300], "path": path, "line": line})


# -- 1. scan --------------------------------------------------------------------------------
def discover(sources: list[str], excludes=DEFAULT_EXCLUDES) -> list[tuple[str, str, bool]]:
    """(path, dotted module name, is_package) of every .py file under the sources."""
    out = []
    for src in sources:
        root = Path(src).resolve()
        if root.is_file():
            out.append((str(root), root.stem, False))
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                path = os.path.join(dirpath, name)
                rel = Path(path).relative_to(root)
                if not name.endswith(".py") or any(fnmatch.fnmatch(f"/{rel}", g)
                                                   for g in excludes):
                    continue  # globs match the path below the source, with a leading /
                rel = rel.with_suffix("")
                parts = list(rel.parts)
                is_pkg = parts[-1] == "__init__"
                if is_pkg:
                    parts = parts[:-1]
                if parts and all(p.isidentifier() for p in parts):
                    out.append((path, ".".join(parts), is_pkg))
    return out


def scan(files, st: GenSettings, report: GenReport) -> list[Candidate]:
    candidates: list[Candidate] = []
    seen_keys: dict[str, str] = {}
    seen_ids: set[str] = set()
    for path, module, is_pkg in files:
        try:
            text = Path(path).read_text(encoding="utf-8")
            found, items = scan_module(text, module, path, is_pkg, st.infer_defaults,
                                       st.extra_imports)
        except (SyntaxError, UnicodeDecodeError, ValueError, RecursionError):
            report.files_unparseable += 1
            continue
        report.files_scanned += 1
        report.functions_found += found
        for item in items:
            if isinstance(item, Rejected):
                report.drop(item.task_id, item.reason, item.detail, item.path, item.lineno)
            elif item.key in seen_keys:
                report.drop(item.task_id, "duplicate", f"same normalised AST as "
                            f"{seen_keys[item.key]}", item.path, item.lineno)
            else:
                seen_keys[item.key] = item.task_id
                while item.task_id in seen_ids:  # the same module name under two sources
                    item.task_id += "_"
                seen_ids.add(item.task_id)
                candidates.append(item)
    return candidates


# -- 2. inputs ------------------------------------------------------------------------------
def make_inputs(cand: Candidate, seed: int, n: int) -> list[tuple[list, dict]]:
    """Up to n distinct (args, kwargs): rows of edge values (and the program's own
    constants) first, then random rows."""
    gen = InputGen(random.Random(f"{seed}:{cand.task_id}"),
                   consts=harvest_constants(ast.parse(cand.solution)))
    fixed = [p for p in cand.params if p.kind != "vararg"]
    var = next((p for p in cand.params if p.kind == "vararg"), None)
    edges = [gen.edges(p.spec) for p in fixed]
    # Row 0: every parameter's first edge (0, "", []); later rows rotate, to mix edges.
    rows: list[list] = [[e[(k + j * min(k, 1)) % len(e)] for j, e in enumerate(edges)]
                        for k in range(min(n // 2, max([len(e) for e in edges] + [1])))]
    out, seen = [], set()
    attempts = 0
    while len(out) < n and attempts < 20 * n:
        attempts += 1
        use_defaults = False
        if rows:
            values, extra = rows.pop(0), []
        else:
            values = [gen.sample(p.spec) for p in fixed]
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
        try:
            key = to_literal((tuple(args), kwargs))
        except Unliteral:
            continue
        if key not in seen:
            seen.add(key)
            out.append((args, kwargs))
    return out


# -- 3./4. record and repeat ----------------------------------------------------------------
def _record(workers, cands, rows_of, avoid, st, trace=False) -> dict:
    jobs = [ProbeJob(c.task_id, c.solution, c.name, rows_of(c), avoid.get(c.task_id), trace)
            for c in cands]
    return record_many(workers, jobs, st.time_limit_s)


def to_problem(cand: Candidate, kept: list, st: GenSettings) -> Problem:
    return Problem(
        task_id=cand.task_id, prompt=cand.prompt, format="assert", entry_point=cand.name,
        tests=[row.test for row in kept], starter_code=cand.prompt, solutions=[cand.solution],
        metadata={"generator": "rltf gen-tests", "seed": st.seed, "source": cand.path,
                  "line": cand.lineno, "typed": cand.typed, "has_docstring": cand.has_docstring,
                  "params": [f"{'*' if p.kind == 'vararg' else ''}{p.name}: {p.spec}"
                             for p in cand.params]})


# -- the pipeline ---------------------------------------------------------------------------
def generate(sources: list[str], st: GenSettings, excludes=DEFAULT_EXCLUDES
             ) -> tuple[list[Problem], GenReport]:
    from cluster.config import ExecutorConfig
    from executor.pool import ExecutorPool
    from executor.worker import Worker

    report = GenReport(sources=[str(Path(s).resolve()) for s in sources])
    t0 = time.monotonic()
    cands = scan(discover(sources, excludes), st, report)
    if st.limit is not None:
        for c in cands[st.limit:]:
            report.drop(c.task_id, "over --limit", "", c.path, c.lineno)
        cands = cands[: st.limit]
    inputs = {c.task_id: make_inputs(c, st.seed, st.per_function * st.pool_factor)
              for c in cands}
    report.inputs["generated"] = sum(map(len, inputs.values()))
    report.timings_s["scan_and_inputs"] = time.monotonic() - t0

    ecfg = ExecutorConfig(workers=max(2, st.workers), time_limit_s=st.time_limit_s,
                          program_budget_s=max(4.0, 4 * st.time_limit_s), isolation=st.isolation)
    workers = [Worker(ecfg) for _ in range(ecfg.workers)]
    report.extra["isolation"] = workers[0].isolation
    try:
        t1 = time.monotonic()
        first = _record(workers, cands, lambda c: inputs[c.task_id], {}, st, trace=True)
        report.timings_s["record"] = time.monotonic() - t1
        kept: dict[str, list] = {}
        for c in cands:
            rows, reason, detail = select_inputs(inputs[c.task_id], first[c.task_id][1],
                                                 report.inputs, st.min_tests, st.per_function,
                                                 st.max_test_chars)
            if reason:
                report.drop(c.task_id, reason, detail, c.path, c.lineno)
            else:
                kept[c.task_id] = rows
        t2 = time.monotonic()
        again = [c for c in cands if c.task_id in kept]
        avoid = {c.task_id: first[c.task_id][0] for c in again}
        second = _record(workers, again,
                         lambda c: [(r.args, r.kwargs) for r in reversed(kept[c.task_id])],
                         avoid, st)
        report.timings_s["rerun"] = time.monotonic() - t2
    finally:
        for w in workers:
            w.close()
    problems: list[tuple[Candidate, Problem]] = []
    for c in again:
        rows, reason, detail = compare_rerun(kept[c.task_id], second[c.task_id][1],
                                             st.min_tests)
        if reason:
            report.drop(c.task_id, reason, detail, c.path, c.lineno)
        else:
            problems.append((c, to_problem(c, rows, st)))

    t3 = time.monotonic()  # 5. the reference must pass every generated test
    pairs = [(p, Solution(task_id=p.task_id, completion=p.solutions[0])) for _, p in problems]
    with ExecutorPool(ExecutorConfig(workers=st.workers, isolation=st.isolation)) as pool:
        results = pool.run(pairs)
    final = []
    for (c, p), r in zip(problems, results):
        if r.outcome == "pass":
            final.append(p)
        else:
            bad = next((t for t, s in zip(p.tests, r.tests) if s != "pass"), "")
            report.drop(c.task_id, "reference fails generated tests",
                        f"{r.outcome} {r.error_type or ''}: {bad[:150]}", c.path, c.lineno)
    report.timings_s["verify"] = time.monotonic() - t3
    report.extra["reference_check"] = {"programs": len(results),
                                       "passed": sum(r.outcome == "pass" for r in results)}
    report.kept = len(final)
    report.timings_s["total"] = time.monotonic() - t0
    return final, report


def summary(report: GenReport, problems: list[Problem]) -> dict:
    n_tests = [len(p.tests) for p in problems]
    ref = report.extra.get("reference_check", {})
    return {
        "sources": report.sources, "files_scanned": report.files_scanned,
        "files_unparseable": report.files_unparseable,
        "functions_found": report.functions_found, "kept": report.kept,
        "dropped_total": sum(report.dropped.values()),
        "dropped": dict(report.dropped.most_common()),
        "kept_typed": dict(collections.Counter(p.metadata["typed"] for p in problems)),
        "kept_with_docstring": sum(bool(p.metadata["has_docstring"]) for p in problems),
        "inputs": dict(report.inputs),
        "tests_total": sum(n_tests),
        "tests_per_problem": {"mean": sum(n_tests) / len(n_tests) if n_tests else 0.0,
                              "min": min(n_tests, default=0), "max": max(n_tests, default=0)},
        "reference_check": {**ref, "pass_rate_before_drop": ref.get("passed", 0)
                            / ref["programs"] if ref.get("programs") else None},
        "timings_s": {k: round(v, 2) for k, v in report.timings_s.items()},
        "isolation": report.extra.get("isolation"),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="rltf gen-tests", description=__doc__.splitlines()[0])
    ap.add_argument("--source", action="append", required=True,
                    help="a .py file or a folder searched recursively (repeatable)")
    ap.add_argument("--out", required=True, help="problems JSONL to write")
    ap.add_argument("--report", default=None, help="write the report (JSON) here")
    ap.add_argument("--solutions-out", default=None,
                    help="also write the reference solutions as solutions JSONL (for rltf exec)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--per-function", type=int, default=10, help="most tests per problem")
    ap.add_argument("--pool-factor", type=int, default=3,
                    help="inputs tried per test kept (chosen for coverage and distinct outputs)")
    ap.add_argument("--min-tests", type=int, default=3, help="fewest tests a problem may keep")
    ap.add_argument("--workers", type=int, default=2, help="sandbox fork-servers")
    ap.add_argument("--time-limit", type=float, default=1.0, help="seconds per input")
    ap.add_argument("--exclude", action="append", default=None,
                    help="glob of paths below a source to skip (repeatable; default: "
                    f"{' '.join(DEFAULT_EXCLUDES)})")
    ap.add_argument("--allow-import", action="append", default=[],
                    help="a top-level package standalone programs may import besides the stdlib")
    ap.add_argument("--no-infer", action="store_true",
                    help="require annotations; do not infer types from default values")
    ap.add_argument("--isolation", default="auto", choices=("auto", "strict", "minimal"))
    ap.add_argument("--limit", type=int, default=None, help="only the first N candidates")
    args = ap.parse_args(argv)
    st = GenSettings(seed=args.seed, per_function=args.per_function, min_tests=args.min_tests,
                     pool_factor=args.pool_factor,
                     infer_defaults=not args.no_infer, extra_imports=frozenset(args.allow_import),
                     time_limit_s=args.time_limit, workers=args.workers,
                     isolation=args.isolation, limit=args.limit)
    for src in args.source:
        if not Path(src).exists():
            print(f"rltf gen-tests: --source {src} does not exist", file=sys.stderr)
            return 2
    problems, report = generate(args.source, st, tuple(args.exclude or DEFAULT_EXCLUDES))
    write_jsonl(args.out, problems)
    if args.solutions_out:
        write_jsonl(args.solutions_out, [Solution(task_id=p.task_id, completion=p.solutions[0],
                                                  sample_id="reference") for p in problems])
    s = summary(report, problems)
    if args.report:
        Path(args.report).parent.mkdir(parents=True, exist_ok=True)
        with open(args.report, "w", encoding="utf-8") as fh:
            json.dump({**s, "command": ["rltf", "gen-tests", *(argv or sys.argv[1:])],
                       "dropped_functions": report.dropped_functions}, fh, indent=1)
    print(f"found {s['functions_found']} functions in {s['files_scanned']} files; kept "
          f"{s['kept']} problems ({s['tests_total']} tests) in {s['timings_s']['total']}s")
    for reason, n in s["dropped"].items():
        print(f"  dropped {n:6d}  {reason}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
