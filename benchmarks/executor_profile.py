"""Where the executor's time goes, by process: the judging process (start-up, reading the
files, rewriting assert tests, judging, writing results), each fork-server's supervisor, its
zygote, and the programs' child processes (with the page faults of zygote and children: after
a fork, each page a process writes costs a copy).

    python benchmarks/executor_profile.py [--workers 2] [--samples 10] [--isolation auto]
    python benchmarks/executor_profile.py --steady [--passes 4]

Default: the work of `rltf exec --workers N` on HumanEval's 164 problems with `--samples`
programs each (the canonical solution), done in this process as `rltf exec` does it, from
start-up to the written results (the same workload as benchmarks/executor_throughput.py).
`--steady`: one worker judging problems it has seen before (as in training), pass after pass.
Figures come from /proc (clock ticks: use enough programs) and, for the children, from what
the zygotes have reaped. On a machine shared with other work, CPU time per program rises with
the load (caches, migrations): compare figures of one run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

T0_WALL, T0_CPU = time.perf_counter(), time.process_time()
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _stat(pid: int) -> dict:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return {"faults": int(fields[7]), "child_faults": int(fields[8]),
            "cpu": (int(fields[11]) + int(fields[12])) / tick,
            "child_cpu": (int(fields[13]) + int(fields[14])) / tick}


def _zygote_of(supervisor: int) -> int:
    return int(open(f"/proc/{supervisor}/task/{supervisor}/children").read().split()[0])


def _sandbox_stats(workers) -> dict:
    """Supervisors, zygotes and children of these workers, summed."""
    out = {"supervisor": 0.0, "zygote": 0.0, "children": 0.0, "zygote_faults": 0,
           "child_faults": 0}
    for w in workers:
        sup = w.fork_server_pid()
        s, z = _stat(sup), _stat(_zygote_of(sup))
        out["supervisor"] += s["cpu"]
        out["zygote"] += z["cpu"]
        out["children"] += z["child_cpu"]
        out["zygote_faults"] += z["faults"]
        out["child_faults"] += z["child_faults"]
    return out


class _Timed:
    """Wraps a function of a module and adds up the CPU time spent in it."""

    def __init__(self, module, name: str):
        self.module, self.name, self.fn, self.cpu = module, name, getattr(module, name), 0.0
        setattr(module, name, self)

    def __call__(self, *args, **kwargs):
        t = time.process_time()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.cpu += time.process_time() - t


def whole(workers: int, samples: int, isolation: str) -> None:
    from core.config import ExecutorConfig
    from executor import worker as worker_mod
    from executor.pool import ExecutorPool
    from core.records import Problem, Solution, read_jsonl, write_jsonl
    from problems.humaneval import load_humaneval

    imported = time.process_time() - T0_CPU, time.perf_counter() - T0_WALL
    problems = load_humaneval()
    tmp = Path(tempfile.mkdtemp(prefix="rltf-profile-"))
    write_jsonl(tmp / "p.jsonl", problems)
    write_jsonl(tmp / "s.jsonl", [Solution(task_id=p.task_id, completion=p.solutions[0],
                                           sample_id=i) for p in problems for i in range(samples)])
    planning = _Timed(worker_mod, "plan_assert_tests")
    judging = _Timed(worker_mod, "judge_program")
    phases: dict[str, tuple[float, float]] = {"imports": imported}

    def phase(name: str, since: tuple[float, float]) -> tuple[float, float]:
        now = time.process_time(), time.perf_counter()
        phases[name] = (now[0] - since[0], now[1] - since[1])
        return now

    mark = time.process_time(), time.perf_counter()
    cfg = ExecutorConfig(workers=workers, isolation=isolation)
    with ExecutorPool(cfg) as pool:
        for w in pool._workers:  # (rltf exec reads its files meanwhile; timed apart here)
            w.ready()
        mark = phase("start the fork-servers", mark)
        started = _sandbox_stats(pool._workers)
        ps, _ = read_jsonl(tmp / "p.jsonl", Problem)
        sols, _ = read_jsonl(tmp / "s.jsonl", Solution)
        by_id = {p.task_id: p for p in ps}
        pairs = [(by_id[s.task_id], s) for s in sols]
        mark = phase("read the files", mark)
        results = pool.run(pairs)
        mark = phase("judge", mark)
        ended = _sandbox_stats(pool._workers)
        tier = pool.isolation
    write_jsonl(tmp / "r.jsonl", results)
    phase("write the results", mark)
    n = len(results)
    passed = sum(r.outcome == "pass" for r in results)
    for r in results:
        if r.outcome != "pass":  # a canonical solution that does not pass: say why
            print(f"not passed: {r.task_id} {r.outcome} {r.tests} {r.error_message}")
    total_wall = time.perf_counter() - T0_WALL

    def ms(x: float) -> str:
        return f"{x / n * 1e3:6.2f} ms"

    print(f"{n} programs (HumanEval canonical x{samples}, {passed} passed), {workers} workers, "
          f"sandbox: {tier}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"wall time: {total_wall:.2f} s ({n / total_wall:.1f} programs/s, start-up "
          f"included)")
    print("this process (CPU, and wall, of each phase):")
    for name, (cpu, wall) in phases.items():
        print(f"  {name:<24}{cpu:6.2f} s CPU {wall:6.2f} s wall   ({ms(cpu)} per program)")
    print(f"    of which rewriting tests {planning.cpu:5.2f} s, judging {judging.cpu:5.2f} s")
    print("sandboxes (CPU per program, while judging; start-up separately):")
    for kind in ("supervisor", "zygote", "children"):
        extra = ""
        if kind != "supervisor":
            key = "zygote_faults" if kind == "zygote" else "child_faults"
            extra = f"  ({(ended[key] - started[key]) / n:.0f} page faults per program)"
        print(f"  {kind + 's':<24}{ms(ended[kind] - started[kind])}{extra}")
    print(f"  start-up of the fork-servers: {started['supervisor'] + started['zygote']:.2f} s "
          f"CPU")
    own = sum(cpu for cpu, _ in phases.values())
    sandbox = sum(ended[k] for k in ("supervisor", "zygote", "children"))
    print(f"all processes: {own + sandbox:.2f} s CPU, {ms(own + sandbox)} per program")


def steady(passes: int, isolation: str) -> None:
    from core.config import ExecutorConfig
    from core.records import Solution
    from executor.worker import Worker
    from problems.humaneval import load_humaneval

    pairs = [(p, Solution(task_id=p.task_id, completion=p.solutions[0]))
             for p in load_humaneval()]
    with Worker(ExecutorConfig(isolation=isolation)) as worker:
        for problem, solution in pairs:
            worker.run(problem, solution)
        supervisor = worker.fork_server_pid()
        zygote = _zygote_of(supervisor)
        s0, z0 = _stat(supervisor), _stat(zygote)
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(passes):
            for problem, solution in pairs:
                worker.run(problem, solution)
        wall, own = time.perf_counter() - t0, time.process_time() - c0
        s1, z1 = _stat(supervisor), _stat(zygote)
        tier = worker.isolation
    n = passes * len(pairs)

    def ms(x: float) -> str:
        return f"{x / n * 1e3:5.2f} ms"

    print(f"{n} programs (HumanEval canonical x{passes}), one worker, sandbox: {tier}")
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--samples", type=int, default=10, help="programs per HumanEval problem")
    ap.add_argument("--steady", action="store_true",
                    help="one worker on problems it has seen, pass after pass")
    ap.add_argument("--passes", type=int, default=4, help="with --steady: measured passes")
    ap.add_argument("--isolation", default="auto", choices=["auto", "strict", "minimal"])
    args = ap.parse_args(argv)
    if args.steady:
        steady(args.passes, args.isolation)
    else:
        whole(args.workers, args.samples, args.isolation)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
