"""Mutation kill rate of the unit tests that `rltf gen-tests` wrote.

For each problem, simple mutants of its reference solution (comparison flips, + and -
swapped, integer constants off by one, a return value replaced with None, `and`/`or`
swapped; see `problems.gen_mutants`) are judged by the executor against the generated tests,
together with the unmutated reference as a control. Prints (and writes, with --out) the
share of mutants rejected, overall, per operator and per problem.

    python benchmarks/gen_tests_mutants.py --problems runs/gen_tests/site.jsonl \\
        [--workers 2] [--max-per-problem 12] [--seed 0] [--out mutants.json]

Per-test limits are short (1 s, 6 s a program) because flipped loop conditions often loop
forever; a mutant that times out counts as killed, as any non-pass verdict does.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cluster.config import ExecutorConfig  # noqa: E402
from executor.records import Problem, read_jsonl  # noqa: E402
from problems.gen_mutants import kill_rate  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", required=True, help="problems JSONL from rltf gen-tests")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--max-per-problem", type=int, default=12,
                    help="mutants drawn per problem (0: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--time-limit", type=float, default=1.0, help="seconds per test")
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    problems, bad = read_jsonl(args.problems, Problem)
    for b in bad:
        print(f"skipped {b}", file=sys.stderr)
    cfg = ExecutorConfig(workers=args.workers, time_limit_s=args.time_limit,
                         program_budget_s=max(6.0, args.time_limit))
    bar = None
    if not args.quiet:
        from tqdm import tqdm

        bar = tqdm(unit="prog", file=sys.stderr, smoothing=0.1)
    t0 = time.monotonic()
    stats = kill_rate(problems, cfg, args.max_per_problem or None, args.seed,
                      progress=bar.update if bar is not None else None)
    if bar is not None:
        bar.close()
    stats["wall_s"] = round(time.monotonic() - t0, 2)
    stats["command"] = ["python", "benchmarks/gen_tests_mutants.py", *(argv or sys.argv[1:])]
    print(f"{stats['problems']} problems, reference pass rate {stats['reference_pass_rate']:.3f}")
    print(f"{stats['mutants']} mutants, {stats['killed']} killed: kill rate "
          f"{stats['kill_rate']:.3f} (mean per problem {stats['mean_problem_kill_rate']:.3f}; "
          f"{stats['problems_killing_most']}/{stats['problems_with_mutants']} problems kill "
          f"more than half) in {stats['wall_s']}s")
    for op, s in stats["by_operator"].items():
        rate = "n/a" if s["kill_rate"] is None else f"{s['kill_rate']:.3f}"
        print(f"  {op:12s} {s['killed']:6d}/{s['mutants']:<6d} {rate}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(stats, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
