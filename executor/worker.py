"""An executor worker: owns one fork-server and judges one program at a time.

    worker = Worker(ExecutorConfig())
    result = worker.run(problem, solution)   # -> Result
    worker.close()

The worker is the trusted parent. It sends the fork-server only what a program may see (the
program, test inputs, the probe copy of assert tests) and keeps the expected outputs to
itself. If the fork-server dies (a program that somehow kills it, or an out-of-memory kill),
the worker starts a new one and runs the program again once; a second death is reported as
a runtime error of that program, so the worker itself never goes down with a program.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from pathlib import Path

from executor import forkserver
from executor.judge import judge_program
from executor.records import Problem, Result, Solution
from executor.testcode import AssertPlan, TestCodeError, plan_assert_tests

_PKG_ROOT = str(Path(__file__).resolve().parent.parent)


class ForkServerDied(RuntimeError):
    pass


class ForkServer:
    """A running `python -m executor.forkserver` and the pipes to it."""

    def __init__(self, isolation: str, uid_base: int, start_timeout_s: float = 60.0):
        to_srv_r, self._to_srv = os.pipe()
        self._from_srv, from_srv_w = os.pipe()
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": _PKG_ROOT,
               "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "executor.forkserver", str(to_srv_r), str(from_srv_w),
             isolation, str(uid_base)],
            pass_fds=(to_srv_r, from_srv_w), env=env, cwd=_PKG_ROOT, close_fds=True,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            start_new_session=True)
        os.close(to_srv_r)
        os.close(from_srv_w)
        hello = self._recv(start_timeout_s)
        if not hello.get("ok"):
            self.close()
            raise RuntimeError(f"sandbox could not start: {hello.get('error')}")
        self.isolation: str = hello["isolation"]
        self.tier: str = hello["tier"]
        self.notes: list[str] = hello.get("notes", [])
        self.uid: int | None = hello.get("uid")

    def _recv(self, timeout_s: float):
        ready, _, _ = select.select([self._from_srv], [], [], timeout_s)
        if not ready:
            raise ForkServerDied(f"fork-server did not answer within {timeout_s:.0f}s")
        try:
            return forkserver.read_msg(self._from_srv)
        except (EOFError, OSError) as err:
            tail = b""
            if self.proc.stderr is not None and self.proc.poll() is not None:
                tail = self.proc.stderr.read()[-2000:]
            raise ForkServerDied(f"fork-server exited ({err}); {tail.decode(errors='replace')}")

    def request(self, req: dict, timeout_s: float) -> dict:
        try:
            forkserver.write_msg(self._to_srv, req)
        except OSError as err:
            raise ForkServerDied(f"fork-server is gone: {err}") from None
        return self._recv(timeout_s)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        for fd in (self._to_srv, self._from_srv):
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stderr is not None:
            self.proc.stderr.close()


class Worker:
    """Judges programs one at a time in its own fork-server."""

    def __init__(self, cfg=None):
        from cluster.config import ExecutorConfig

        self.cfg = cfg or ExecutorConfig()
        self._lock = threading.Lock()
        self._plans: OrderedDict[tuple, AssertPlan | TestCodeError] = OrderedDict()
        self._server: ForkServer | None = None
        self.restarts = 0
        self._start()

    def _start(self) -> None:
        self._server = ForkServer(self.cfg.isolation, self.cfg.uid_base)

    @property
    def isolation(self) -> str:
        return self._server.isolation if self._server else "stopped"

    @property
    def tier(self) -> str:
        return self._server.tier if self._server else "stopped"

    def _plan(self, problem: Problem) -> AssertPlan:
        key = (problem.task_id, problem.setup, tuple(problem.tests))
        plan = self._plans.get(key)
        if plan is None:
            try:
                plan = plan_assert_tests(problem.setup, list(problem.tests))
            except TestCodeError as err:
                plan = err
            self._plans[key] = plan
            if len(self._plans) > 512:
                self._plans.popitem(last=False)
        if isinstance(plan, TestCodeError):
            raise plan
        return plan

    def _request(self, problem: Problem, program: str, plan: AssertPlan | None) -> dict:
        cfg = self.cfg
        limit = problem.time_limit_s or cfg.time_limit_s
        req = {
            "op": "run", "format": problem.format, "program": program,
            "fn_name": problem.fn_name, "entry_point": problem.entry_point,
            "time_limit_s": float(limit), "budget_s": float(max(cfg.program_budget_s, limit)),
            "output_limit": cfg.output_limit_kb * 1024,
            "limits": {"memory_mb": cfg.memory_mb, "cpu_s": int(cfg.program_budget_s) + 2,
                       "file_size_mb": cfg.file_size_mb, "open_files": cfg.max_open_files,
                       "processes": cfg.max_processes},
        }
        if problem.format == "assert":
            req.update(inputs=[], setup=plan.probe_setup, tests=plan.probe_tests)
        else:  # inputs only: expected outputs stay here
            req["inputs"] = [t["input"] for t in problem.tests]
        return req

    def run(self, problem: Problem, solution: Solution) -> Result:
        with self._lock:
            return self._run(problem, solution)

    def _run(self, problem: Problem, solution: Solution) -> Result:
        if solution.task_id != problem.task_id:
            raise ValueError(f"solution for {solution.task_id} judged against {problem.task_id}")
        try:
            plan = self._plan(problem) if problem.format == "assert" else None
        except TestCodeError as err:  # the data is broken, not the program: say so
            return Result(task_id=problem.task_id, sample_id=solution.sample_id, outcome="fail",
                          passed=0, total=len(problem.tests),
                          tests=["not_run"] * len(problem.tests), error_type="TestCodeError",
                          error_message=str(err), isolation=self.tier)
        t0 = time.monotonic()
        try:
            resp = self._observe(problem, solution.completion, plan)
        except ForkServerDied:
            return Result(task_id=problem.task_id, sample_id=solution.sample_id,
                          outcome="runtime_error", passed=0, total=len(problem.tests),
                          tests=["crash"] * len(problem.tests), error_type="SandboxCrash",
                          error_message="the sandbox died twice on this program",
                          duration_s=time.monotonic() - t0, isolation=self.tier)
        return judge_program(problem, resp, plan, tol=self.cfg.float_tolerance,
                             sample_id=solution.sample_id)

    def observe(self, problem: Problem, program: str) -> dict:
        """The fork-server's raw observations of `program` on `problem`'s tests, unjudged.

        The request is the one `run` sends (for `call` problems only the inputs, never the
        expected outputs). Each entry of the answer's `tests` has a `status`; a `call` test
        that returned carries its value encoded as `"v"` (`executor.serialize.decode`).
        Raises ForkServerDied when the sandbox dies twice on the program."""
        with self._lock:
            plan = self._plan(problem) if problem.format == "assert" else None
            return self._observe(problem, program, plan)

    def _observe(self, problem: Problem, program: str, plan: AssertPlan | None) -> dict:
        req = self._request(problem, program, plan)
        wait_s = req["budget_s"] + 30.0
        for attempt in range(2):
            try:
                if self._server is None or not self._server.alive():
                    self._restart()
                return self._server.request(req, wait_s)
            except ForkServerDied:
                self._restart()
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")

    def _restart(self) -> None:
        if self._server is not None:
            try:
                self._server.proc.kill()
            except OSError:
                pass
            self._server.close()
        self.restarts += 1
        self._start()

    @property
    def sandbox_uid(self) -> int | None:
        """The UID programs run as (None when they run as this process's user)."""
        return self._server.uid if self._server else None

    def fork_server_pid(self) -> int | None:
        return self._server.proc.pid if self._server else None

    def close(self) -> None:
        with self._lock:
            if self._server is not None:
                self._server.close()
                self._server = None

    def __enter__(self) -> "Worker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
