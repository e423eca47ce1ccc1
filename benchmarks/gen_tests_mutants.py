"""How much unit-test data `rltf gen-tests` makes from untyped code, and how good its tests are.

    python benchmarks/gen_tests_mutants.py --stdlib [--mbpp [FILE]] [--workers 2] [--out F]
    python benchmarks/gen_tests_mutants.py --problems runs/gen_tests/site.jsonl

--stdlib: the generator on the standard library's pure modules (`PURE_MODULES`: modules whose
  functions compute on their arguments, with no files, network, processes, threads or
  terminal), with --allow-bare. Prints functions found, those with at least one parameter,
  problems kept (target: >= 40% of those with a parameter), by source of types, what the
  default settings keep (functions with a docstring), and the baseline of the same command
  with annotations only (the generator before type inference).
--mbpp: the MBPP reference solutions (the shared fixture), written one task a file, as an
  untyped corpus (--allow-bare: they have no docstrings). Prints the tasks whose function
  became a problem (target >= 60%), and, of the mutants of each kept function that MBPP's
  own three human-written tests kill, the share its generated tests kill too (target >= 90%);
  also apart for the mutants that steered the choice of tests and those that did not. The
  generated tests' verdicts on the mutants are the generator's own (executor verdicts,
  `metadata["mutation"]`); MBPP's tests judge the same mutants here, on the same executor.
--problems: the old measure: each problem's reference and up to --max-per-problem mutants
  judged against its tests.

Both corpora also check that every kept reference passes its own generated tests (judged
again here). Runs keep their finished chunks in --work-dir, so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import sys
import sysconfig
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.config import ExecutorConfig  # noqa: E402
from core.records import Problem, Solution, read_jsonl  # noqa: E402
from problems.gentests.mutants import kill_rate, mutants  # noqa: E402
from problems.gentests.generate import GenSettings, generate, summary  # noqa: E402

PURE_MODULES = (
    "base64", "bisect", "calendar", "colorsys", "copy", "datetime", "difflib",
    "email/base64mime", "email/quoprimime", "encodings/idna", "encodings/punycode", "fnmatch",
    "fractions", "heapq", "html/__init__", "ipaddress", "json/decoder", "json/encoder",
    "operator", "pprint", "quopri", "re/_parser", "reprlib", "shlex", "statistics", "string",
    "stringprep", "textwrap", "tomllib/_parser", "urllib/parse", "xml/sax/saxutils",
    "_pydecimal")
MBPP = "/work/shared/fixtures/mbpp/mbpp.jsonl"


def _pool(workers: int, limit: float = 1.0, budget: float = 6.0):
    from executor.pool import ExecutorPool

    return ExecutorPool(ExecutorConfig(workers=workers, time_limit_s=limit,
                                       program_budget_s=budget))


def recheck(problems: list[Problem], workers: int) -> dict:
    """Every kept reference judged again against its generated tests."""
    with _pool(workers) as pool:
        res = pool.run([(p, Solution(task_id=p.task_id, completion=p.solutions[0]))
                        for p in problems])
    bad = [p.task_id for p, r in zip(problems, res) if r.outcome != "pass"]
    return {"references": len(res), "pass": len(res) - len(bad), "failing": bad[:10]}


def _run(sources, st, workers, work, label) -> tuple[list, dict, float]:
    t0 = time.monotonic()
    problems, report = generate(sources, st, executor_cfg=ExecutorConfig(workers=workers),
                                work_dir=work)
    return problems, summary(report, problems), time.monotonic() - t0


# -- the standard library ---------------------------------------------------------------------
def stdlib(args) -> dict:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = [str(root / f"{m}.py") for m in PURE_MODULES]
    work = Path(args.work_dir)
    st = GenSettings(seed=args.seed, allow_bare=True)
    problems, s, wall = _run(files, st, args.workers, work / "stdlib", "stdlib")
    base_st = GenSettings(seed=args.seed, allow_bare=True, infer_types=False, probe=False)
    _, base, _ = _run(files, base_st, args.workers, work / "stdlib-annotated", "baseline")
    _, plain, _ = _run(files, GenSettings(seed=args.seed), args.workers,
                       work / "stdlib-default", "default")
    with_doc = plain["kept"]
    out = {"modules": len(PURE_MODULES), "functions_found": s["functions_found"],
           "functions_with_params": s["functions_with_params"], "kept": s["kept"],
           "kept_share": s["kept_share_of_functions_with_params"],
           "kept_default_settings": with_doc, "kept_by_type_source": s["kept_by_type_source"],
           "kept_params_by_type_source": s["kept_params_by_type_source"],
           "params_by_type_source": s["params_by_type_source"],
           "mutation_score_at_least_half": sum(
               p.metadata["mutation"]["score"] is not None
               and p.metadata["mutation"]["score"] >= 0.5 for p in problems),
           "dropped": s["dropped"], "mutation_score_mean": s["mutation_score"]["mean"],
           "tests_total": s["tests_total"], "tests_raising": s["tests_raising"],
           "baseline_annotations_only_kept": base["kept"], "wall_s": round(wall, 1),
           "recheck": recheck(problems, args.workers)}
    print(f"stdlib ({len(PURE_MODULES)} pure modules): {out['functions_found']} functions, "
          f"{out['functions_with_params']} with parameters; kept {out['kept']} problems = "
          f"{out['kept_share']:.1%} of those (target >= 40%), with --allow-bare; the default "
          f"settings (functions with a docstring only) keep {with_doc}")
    print(f"  baseline, annotations only (the generator before): {base['kept']} problems; "
          f"ratio {out['kept'] / max(base['kept'], 1):.1f}x")
    print("  kept by type source (a problem counts under each source of its parameters): "
          + ", ".join(f"{k} {v}" for k, v in out["kept_by_type_source"].items()))
    print("  parameters of kept problems by source: "
          + ", ".join(f"{k} {v}" for k, v in out["kept_params_by_type_source"].items()))
    print("  parameters of every function that reached typing, by source: "
          + ", ".join(f"{k} {v}" for k, v in out["params_by_type_source"].items()))
    print(f"  mutation score mean {out['mutation_score_mean']:.3f} "
          f"({out['mutation_score_at_least_half']} problems at 0.5 or more); references "
          f"passing their own generated tests: {out['recheck']['pass']}/"
          f"{out['recheck']['references']}")
    return out


# -- MBPP ---------------------------------------------------------------------------------------
def _mbpp_records(path: str) -> list[tuple[dict, Problem]]:
    from problems.mbpp import convert_mbpp, split_of

    out = []
    for line in open(path, encoding="utf-8"):
        if line.strip():
            rec = json.loads(line)
            out.append((rec, convert_mbpp(rec, split_of(rec["task_id"]) or "test")))
    return out


def mbpp(args) -> dict:
    work = Path(args.work_dir)
    records = _mbpp_records(args.mbpp)[: args.mbpp_limit]
    corpus = work / "mbpp_corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    for rec, _ in records:  # one task a file; MBPP's code has \r\n line ends
        code = rec["code"].replace("\r\n", "\n").replace("\r", "\n").rstrip() + "\n"
        path = corpus / f"mbpp_{rec['task_id']}.py"
        if not path.exists() or path.read_text() != code:
            path.write_text(code)
    st = GenSettings(seed=args.seed, allow_bare=True)
    problems, s, wall = _run([str(corpus)], st, args.workers, work / "mbpp", "mbpp")
    by_id = {p.task_id: p for p in problems}
    kept = [(mb, by_id[f"mbpp_{rec['task_id']}.{mb.entry_point}"]) for rec, mb in records
            if f"mbpp_{rec['task_id']}.{mb.entry_point}" in by_id]
    # MBPP's tests judge the reference (control, and its time) and then the same mutants.
    with _pool(args.workers, 4.0, 20.0) as pool:
        refs = pool.run([(mb, Solution(task_id=mb.task_id, completion=gp.solutions[0]))
                         for mb, gp in kept])
    pairs, meta = [], []
    for (mb, gp), ref in zip(kept, refs):
        if ref.outcome != "pass":
            continue
        limit = max(0.25, 5 * ref.duration_s)
        prob = mb.model_copy(update={"time_limit_s": limit})
        rng = random.Random(f"{st.seed}:{gp.task_id}")
        for m in mutants(gp.solutions[0], gp.entry_point, st.max_mutants, rng):
            pairs.append((prob, Solution(task_id=mb.task_id, completion=m.program)))
            meta.append((gp, m.id))
    with _pool(args.workers, 1.0, 4.0) as pool:
        res = pool.run(pairs)
    tally = collections.Counter()
    for (gp, mid), r in zip(meta, res):
        mut = gp.metadata["mutation"]
        part = "guide" if mid in mut["guide"] else "heldout"
        gen_kills, mbpp_kills = mid not in mut["survivors"], r.outcome != "pass"
        for key in ("all", part):
            tally[f"{key}_mutants"] += 1
            tally[f"{key}_mbpp"] += mbpp_kills
            tally[f"{key}_gen"] += gen_kills
            tally[f"{key}_both"] += mbpp_kills and gen_kills
    share = {k: tally[f"{k}_both"] / tally[f"{k}_mbpp"] if tally[f"{k}_mbpp"] else None
             for k in ("all", "guide", "heldout")}
    out = {"tasks": len(records), "kept": len(kept), "kept_share": len(kept) / len(records),
           "problems_total": s["kept"], "dropped": s["dropped"],
           "mbpp_reference_fails_mbpp_tests_here": sum(r.outcome != "pass" for r in refs),
           "mutants": dict(tally), "share_of_mbpp_kills_also_killed": share,
           "kept_by_type_source": s["kept_by_type_source"], "wall_s": round(wall, 1),
           "recheck": recheck([gp for _, gp in kept], args.workers)}
    print(f"MBPP ({len(records)} reference solutions, one a file): {len(kept)} tasks kept = "
          f"{out['kept_share']:.1%} (target >= 60%); {s['kept']} problems in all")
    print(f"  mutants of kept functions: {tally['all_mutants']}; MBPP's tests kill "
          f"{tally['all_mbpp']}, the generated tests {tally['all_gen']} "
          f"(ratio {tally['all_gen'] / max(tally['all_mbpp'], 1):.2f}x)")
    print(f"  of MBPP's kills, the generated tests kill {tally['all_both']} = "
          f"{share['all']:.1%} (target >= 90%); on mutants that steered the tests "
          f"{_pct(share['guide'])}, on mutants they never saw {_pct(share['heldout'])}")
    print(f"  references passing their own generated tests: {out['recheck']['pass']}/"
          f"{out['recheck']['references']}")
    return out


def _pct(x) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def problems_file(args) -> dict:
    problems, bad = read_jsonl(args.problems, Problem)
    for b in bad:
        print(f"skipped {b}", file=sys.stderr)
    cfg = ExecutorConfig(workers=args.workers, time_limit_s=args.time_limit,
                         program_budget_s=max(6.0, args.time_limit))
    stats = kill_rate(problems, cfg, args.max_per_problem or None, args.seed)
    print(f"{stats['problems']} problems, reference pass rate {stats['reference_pass_rate']:.3f}")
    print(f"{stats['mutants']} mutants, {stats['killed']} killed: kill rate "
          f"{stats['kill_rate']:.3f} (mean per problem {stats['mean_problem_kill_rate']:.3f})")
    for op, st in stats["by_operator"].items():
        rate = "n/a" if st["kill_rate"] is None else f"{st['kill_rate']:.3f}"
        print(f"  {op:12s} {st['killed']:6d}/{st['mutants']:<6d} {rate}")
    return stats


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stdlib", action="store_true", help="measure on the pure stdlib modules")
    ap.add_argument("--mbpp", nargs="?", const=MBPP, default=None,
                    help=f"measure on MBPP's references (default file: {MBPP})")
    ap.add_argument("--mbpp-limit", type=int, default=None, help="only the first N tasks")
    ap.add_argument("--problems", default=None, help="problems JSONL from rltf gen-tests")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--max-per-problem", type=int, default=12,
                    help="--problems: mutants drawn per problem (0: all)")
    ap.add_argument("--time-limit", type=float, default=1.0, help="--problems: s per test")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work-dir", default="runs/gen_tests_bench",
                    help="generator work folders (finished chunks are reused)")
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    args = ap.parse_args(argv)
    if not (args.stdlib or args.mbpp or args.problems):
        args.stdlib, args.mbpp = True, MBPP
    figures: dict = {"command": ["python", "benchmarks/gen_tests_mutants.py",
                                 *(argv if argv is not None else sys.argv[1:])]}
    if args.stdlib:
        figures["stdlib"] = stdlib(args)
    if args.mbpp:
        figures["mbpp"] = mbpp(args)
    if args.problems:
        figures["problems"] = problems_file(args)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(figures, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
