"""Where the executor's time goes, by process: the judging process (start-up, reading the
files, rewriting assert tests, judging, writing results), each fork-server's supervisor, its
zygote, and the programs' child processes (with the page faults of zygote and children: after
a fork, each page a process writes costs a copy).

    python benchmarks/executor_profile.py [--workers 2] [--samples 10] [--isolation auto]
    python benchmarks/executor_profile.py --steady [--passes 4] [--supervisor-calls]

Default: the work of `rltf exec --workers N` on HumanEval's 164 problems with `--samples`
programs each (the canonical solution), done in this process as `rltf exec` does it, from
start-up to the written results (the same workload as benchmarks/executor_throughput.py).
`--steady`: one worker judging problems it has seen before (as in training), pass after pass,
then the floor of benchmarks/executor_throughput.py (one bare fork-server) on the same
programs, process by process, for comparison. Each process's CPU is split into the kernel's
part (fork, page faults, exit, system calls) and the rest. `--supervisor-calls` also runs
the supervisor under cProfile and prints its calls by function: read the call counts. The
profiler's own cost per call weighs most on small Python functions (a record that takes
about 2 us to build shows as 35 us), so its times overstate them.
Figures come from /proc (clock ticks: use enough programs) and, for the children, from what
the zygotes have reaped. On a machine shared with other work, CPU time per program rises with
the load (caches, migrations): compare figures of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
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
            "child_cpu": (int(fields[13]) + int(fields[14])) / tick,
            "sys": int(fields[12]) / tick, "child_sys": int(fields[14]) / tick}


def _zygote_of(supervisor: int) -> int:
    return int(open(f"/proc/{supervisor}/task/{supervisor}/children").read().split()[0])


def _sandbox_stats(workers) -> dict:
    """Supervisors, zygotes and children of these workers, summed."""
    out = dict.fromkeys(("supervisor", "zygote", "children", "supervisor_sys", "zygote_sys",
                         "children_sys", "zygote_faults", "children_faults"), 0.0)
    for w in workers:
        sup = w.fork_server_pid()
        s, z = _stat(sup), _stat(_zygote_of(sup))
        out["supervisor"] += s["cpu"]
        out["supervisor_sys"] += s["sys"]
        out["zygote"] += z["cpu"]
        out["zygote_sys"] += z["sys"]
        out["children"] += z["child_cpu"]
        out["children_sys"] += z["child_sys"]
        out["zygote_faults"] += z["faults"]
        out["children_faults"] += z["child_faults"]
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
        name = kind + ("s" if kind != "children" else "")
        extra = f"  (of which kernel {ms(ended[kind + '_sys'] - started[kind + '_sys'])}"
        if kind != "supervisor":
            extra += f"; {(ended[kind + '_faults'] - started[kind + '_faults']) / n:.0f} page faults"
        print(f"  {name:<24}{ms(ended[kind] - started[kind])}{extra})")
    print(f"  start-up of the fork-servers: {started['supervisor'] + started['zygote']:.2f} s "
          f"CPU")
    own = sum(cpu for cpu, _ in phases.values())
    sandbox = sum(ended[k] for k in ("supervisor", "zygote", "children"))
    print(f"all processes: {own + sandbox:.2f} s CPU, {ms(own + sandbox)} per program")


def steady(passes: int, isolation: str, calls: bool) -> None:
    from core.config import ExecutorConfig
    from core.records import Solution
    from executor.worker import Worker
    from problems.humaneval import load_humaneval

    pairs = [(p, Solution(task_id=p.task_id, completion=p.solutions[0]))
             for p in load_humaneval()]
    report = _profile_supervisor() if calls else None
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
    print(f"             supervisor:   {ms(s1['cpu'] - s0['cpu'])}  "
          f"(of which kernel {ms(s1['sys'] - s0['sys'])})")
    print(f"             zygote:       {ms(z1['cpu'] - z0['cpu'])}  "
          f"(of which kernel {ms(z1['sys'] - z0['sys'])}; "
          f"{(z1['faults'] - z0['faults']) / n:.0f} page faults)")
    print(f"             children:     {ms(z1['child_cpu'] - z0['child_cpu'])}  "
          f"(of which kernel {ms(z1['child_sys'] - z0['child_sys'])}; "
          f"{(z1['child_faults'] - z0['child_faults']) / n:.0f} page faults)")
    total = own + (s1["cpu"] - s0["cpu"]) + (z1["cpu"] - z0["cpu"]) + (
        z1["child_cpu"] - z0["child_cpu"])
    print(f"             all:          {ms(total)}")
    out = subprocess.run([sys.executable, __file__, "--floor-process", "--passes", str(passes)],
                         check=True, capture_output=True, text=True).stdout
    f = json.loads(out.strip().splitlines()[-1])
    print(f"the floor (benchmarks/executor_throughput.py's bare fork-server, one, same programs):")
    print(f"CPU per program, server:   {f['server']:5.2f} ms  (of which kernel "
          f"{f['server_sys']:5.2f} ms; compiles, forks, waits)")
    print(f"             children:     {f['children']:5.2f} ms  (of which kernel "
          f"{f['children_sys']:5.2f} ms; {f['faults']:.0f} page faults)")
    print(f"             all:          {f['server'] + f['children']:5.2f} ms")
    if report is not None:
        text = report.read_text()
        print("the supervisor's own calls (cProfile, its CPU clock; the profiler slows it):")
        print(text[text.rindex("=====") + 5:])


def _profile_supervisor() -> Path:
    """Start fork-servers through this file (`--profiled-fork-server`), whose supervisor
    serves requests under cProfile and writes its statistics to the returned file."""
    import executor.link as link

    report = Path(tempfile.mkdtemp(prefix="rltf-profile-")) / "supervisor.txt"
    popen = link.subprocess.Popen

    def start(args, **kwargs):
        if args[1:3] == ["-m", "executor.forkserver"]:
            args = [args[0], __file__, "--profiled-fork-server", str(report), *args[3:]]
        return popen(args, **kwargs)

    link.subprocess.Popen = start
    return report


def profiled_fork_server(report: str, args: list[str]) -> None:
    """A fork-server whose supervisor's work on each request runs under cProfile (its CPU
    clock); the statistics so far are appended to `report` every 100 programs (the worker
    ends the fork-server with a signal). The zygote is forked before the profiler runs."""
    import cProfile
    import fcntl
    import io
    import pstats

    from executor import forkserver, supervisor

    fd = os.open(report, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    high = fcntl.fcntl(fd, fcntl.F_DUPFD, 100)  # above the descriptors the fork-server sets
    os.close(fd)
    prof = cProfile.Profile(time.process_time)

    def profiled(method):
        def run(*args):
            prof.enable()
            try:
                return method(*args)
            finally:
                prof.disable()
        return run

    class Server(supervisor.Server):
        runs = 0
        prepare = profiled(supervisor.Server.prepare)
        _run = profiled(supervisor.Server.run_prepared)

        def run_prepared(self, item):
            try:
                return self._run(item)
            finally:
                Server.runs += 1
                if Server.runs % 100 == 0:
                    out = io.StringIO()
                    stats = pstats.Stats(prof, stream=out)
                    stats.sort_stats("tottime").print_stats(25)
                    os.write(high, f"=====after {Server.runs} programs\n{out.getvalue()}"
                             .encode())

    forkserver.Server = Server
    sys.argv = [forkserver.__file__, *args]
    forkserver.main()


def floor_process(passes: int) -> None:
    """The floor's fork-server, one, in this fresh process: per program, its CPU and its
    children's, user and kernel (JSON on the last line)."""
    import resource

    from executor_throughput import floor_programs, serve_floor

    programs = floor_programs(passes)
    devnull = os.open(os.devnull, os.O_WRONLY)
    s0, c0 = (resource.getrusage(who) for who in (resource.RUSAGE_SELF,
                                                   resource.RUSAGE_CHILDREN))
    serve_floor(programs, devnull)
    s1, c1 = (resource.getrusage(who) for who in (resource.RUSAGE_SELF,
                                                   resource.RUSAGE_CHILDREN))
    n = len(programs) / 1e3
    print(json.dumps({"server": (s1.ru_utime + s1.ru_stime - s0.ru_utime - s0.ru_stime) / n,
                      "server_sys": (s1.ru_stime - s0.ru_stime) / n,
                      "children": (c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime) / n,
                      "children_sys": (c1.ru_stime - c0.ru_stime) / n,
                      "faults": (c1.ru_minflt - c0.ru_minflt) / n / 1e3}))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--samples", type=int, default=10, help="programs per HumanEval problem")
    ap.add_argument("--steady", action="store_true",
                    help="one worker on problems it has seen, pass after pass")
    ap.add_argument("--passes", type=int, default=4, help="with --steady: measured passes")
    ap.add_argument("--isolation", default="auto", choices=["auto", "strict", "minimal"])
    ap.add_argument("--supervisor-calls", action="store_true",
                    help="with --steady: also profile the supervisor's calls (cProfile)")
    ap.add_argument("--floor-process", action="store_true", help=argparse.SUPPRESS)
    if argv is None and sys.argv[1:2] == ["--profiled-fork-server"]:
        profiled_fork_server(sys.argv[2], sys.argv[3:])
        return 0
    args = ap.parse_args(argv)
    if args.floor_process:
        floor_process(args.passes)
    elif args.steady:
        steady(args.passes, args.isolation, args.supervisor_calls)
    else:
        whole(args.workers, args.samples, args.isolation)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
