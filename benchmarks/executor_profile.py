"""Where an executor worker's CPU goes, per program: the worker itself (request, judging), the
fork-server's supervisor, its zygote, and the program's child processes, with the page faults
of the zygote and the children (after a fork, each page a process writes costs a copy).

    python benchmarks/executor_profile.py [--passes 4] [--isolation auto]

One worker judges HumanEval's 164 canonical programs: one pass to warm up, then `--passes`
measured passes. Figures come from /proc (clock ticks, so use enough passes), and the
children's from what the zygote has reaped.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _stat(pid: int) -> dict:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return {"faults": int(fields[7]), "child_faults": int(fields[8]),
            "cpu": (int(fields[11]) + int(fields[12])) / tick,
            "child_cpu": (int(fields[13]) + int(fields[14])) / tick}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--passes", type=int, default=4)
    ap.add_argument("--isolation", default="auto", choices=["auto", "strict", "minimal"])
    args = ap.parse_args(argv)

    from cluster.config import ExecutorConfig
    from executor.records import Solution
    from executor.worker import Worker
    from problems.humaneval import load_humaneval

    pairs = [(p, Solution(task_id=p.task_id, completion=p.solutions[0]))
             for p in load_humaneval()]
    with Worker(ExecutorConfig(isolation=args.isolation)) as worker:
        for problem, solution in pairs:
            worker.run(problem, solution)
        supervisor = worker.fork_server_pid()
        zygote = int(open(f"/proc/{supervisor}/task/{supervisor}/children").read().split()[0])
        s0, z0 = _stat(supervisor), _stat(zygote)
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(args.passes):
            for problem, solution in pairs:
                worker.run(problem, solution)
        wall, own = time.perf_counter() - t0, time.process_time() - c0
        s1, z1 = _stat(supervisor), _stat(zygote)
        tier = worker.isolation
    n = args.passes * len(pairs)

    def ms(x: float) -> str:
        return f"{x / n * 1e3:5.2f} ms"

    print(f"{n} programs (HumanEval canonical x{args.passes}), one worker, sandbox: {tier}")
    print(f"wall time per program:     {ms(wall)}")
    print(f"CPU per program, worker:   {ms(own)}  (request, judging)")
    print(f"             supervisor:   {ms(s1['cpu'] - s0['cpu'])}")
    print(f"             zygote:       {ms(z1['cpu'] - z0['cpu'])}  "
          f"({(z1['faults'] - z0['faults']) / n:.0f} page faults)")
    print(f"             children:     {ms(z1['child_cpu'] - z0['child_cpu'])}  "
          f"({(z1['child_faults'] - z0['child_faults']) / n:.0f} page faults)")
    total = own + (s1["cpu"] - s0["cpu"]) + (z1["cpu"] - z0["cpu"]) + (
        z1["child_cpu"] - z0["child_cpu"])
    print(f"             all:          {ms(total)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
