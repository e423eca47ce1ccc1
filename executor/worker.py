"""An executor worker: owns one fork-server, which runs one program at a time.

    worker = Worker(ExecutorConfig())
    result = worker.run(problem, solution)   # -> Result
    lane = Lane(worker)                      # keeps the next request queued at the fork-server
    lane.add(key, problem, solution); key, result = lane.next()
    worker.close()

The worker is the trusted parent. It sends the fork-server only what a program may see (the
program, test inputs, the probe copy of assert tests) and keeps the expected outputs to
itself. If the fork-server dies (a program that somehow kills it, or an out-of-memory kill),
the worker starts a new one and runs the program again once; a second death is reported as
a runtime error of that program, so the worker itself never goes down with a program.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque

from core.config import ExecutorConfig
from core.records import Problem, Result, Solution
from executor.judge import judge_program
from executor.link import ForkServer, ForkServerDied
from executor.messages import RunObservation, RunRequest
from executor.testcode import AssertPlan, TestCodeError, plan_assert_tests
from executor.wire import encode_msg


class _PlanCache:
    """Rewritten assert-format test code by problem, shared by the workers of a process (a
    problem's plan is worked out once, whichever worker sees it first)."""

    def __init__(self, size: int = 4096):
        self.size = size
        self._lock = threading.Lock()
        self._plans: OrderedDict[tuple, AssertPlan | TestCodeError] = OrderedDict()

    def clear(self) -> None:
        with self._lock:
            self._plans.clear()

    @staticmethod
    def _key(problem: Problem) -> tuple:
        return (problem.task_id, problem.setup, tuple(problem.tests))

    def has(self, problem: Problem) -> bool:
        with self._lock:
            return self._key(problem) in self._plans

    def get(self, problem: Problem, program: str | None = None) -> AssertPlan:
        """The problem's plan; for `program`, the plan where the built-in names it redefines
        are the program's (`AssertPlan.shadowed_by`), when there are any."""
        plan = self._get(self._key(problem), problem, frozenset())
        if program is not None:
            shadowed = plan.shadowed_by(program)
            if shadowed:
                return self._get(self._key(problem) + (shadowed,), problem, shadowed)
        return plan

    def _get(self, key: tuple, problem: Problem, shadowed: frozenset) -> AssertPlan:
        with self._lock:
            plan = self._plans.get(key)
            if plan is not None:
                self._plans.move_to_end(key)
        if plan is None:
            try:
                plan = plan_assert_tests(problem.setup, list(problem.tests), shadowed)
            except TestCodeError as err:
                plan = err
            with self._lock:
                self._plans[key] = plan
                if len(self._plans) > self.size:
                    self._plans.popitem(last=False)
        if isinstance(plan, TestCodeError):
            raise plan
        return plan


_PLANS = _PlanCache()


class _Job:
    """One program on its way through the fork-server."""

    __slots__ = ("key", "problem", "solution", "plan", "msg", "wait_s", "sent", "tries",
                 "t0", "resp", "result")

    def __init__(self, key, problem: Problem, solution: Solution):
        self.key, self.problem, self.solution = key, problem, solution
        self.plan: AssertPlan | None = None
        self.msg = b""
        self.wait_s = 0.0
        self.sent = False
        self.tries = 0
        self.t0 = time.monotonic()
        self.resp: RunObservation | None = None
        self.result: Result | BaseException | None = None


class Worker:
    """Judges programs in its own fork-server: one at a time (`run`), or through a `Lane`,
    which keeps the next request waiting at the fork-server while the current one runs."""

    def __init__(self, cfg: ExecutorConfig | None = None, plans: _PlanCache | None = None,
                 wait: bool = True):
        self.cfg = cfg or ExecutorConfig()
        self._lock = threading.Lock()
        self._plans = plans or _PLANS
        self._server: ForkServer | None = None
        self.restarts = 0
        self._start(wait)

    def _start(self, wait: bool = True) -> None:
        self._server = ForkServer(self.cfg.isolation, self.cfg.uid_base, self.cfg.pin_cpus,
                                  wait=wait)

    @classmethod
    def start_many(cls, cfg, n: int, wait: bool = True) -> list["Worker"]:
        """n workers whose fork-servers start at the same time (each takes a few hundred
        milliseconds to start: together, the pool is ready in about the time of one).
        Without `wait`, they may get work at once: it waits in their pipes while they start,
        and a fork-server that cannot start raises at the first answer awaited from it."""
        workers: list[Worker] = []
        try:
            for _ in range(n):
                workers.append(cls(cfg, wait=False))
            if wait:
                for w in workers:
                    w.ready()
        except BaseException:
            for w in workers:
                w.close()
            raise
        return workers

    def ready(self) -> "Worker":
        """Wait until the fork-server has started (see `start_many`)."""
        if self._server is not None:
            self._server.ready()
        return self

    @property
    def isolation(self) -> str:
        return self._server.isolation if self._server else "stopped"

    @property
    def tier(self) -> str:
        return self._server.tier if self._server else "stopped"

    @property
    def cpu(self) -> int | None:
        """The CPU this worker's programs run on (None: any; see executor.pin_cpus)."""
        return self._server.cpu if self._server else None

    def _plan(self, problem: Problem, program: str | None = None) -> AssertPlan:
        return self._plans.get(problem, program)

    def _request(self, problem: Problem, program: str, plan: AssertPlan | None) -> RunRequest:
        cfg = self.cfg
        limit = problem.time_limit_s or cfg.time_limit_s
        req = RunRequest(
            format=problem.format, program=program, fn_name=problem.fn_name,
            entry_point=problem.entry_point, time_limit_s=float(limit),
            wall_limit_s=float(limit) * cfg.wall_limit_factor,
            budget_s=float(max(cfg.program_budget_s, limit)),
            output_limit=cfg.output_limit_kb * 1024,
            limits={"memory_mb": cfg.memory_mb, "cpu_s": int(cfg.program_budget_s) + 2,
                    "file_size_mb": cfg.file_size_mb, "open_files": cfg.max_open_files,
                    "processes": cfg.max_processes})
        if problem.format == "assert":
            req.tests = [None] * len(problem.tests)
            req.probe_codes, req.uses_random = plan.probe_codes, plan.uses_random
        else:  # inputs only: expected outputs stay here
            req.inputs = [t["input"] for t in problem.tests]
        return req

    def _job(self, key, problem: Problem, solution: Solution) -> _Job:
        """A job ready to send, or one already decided (broken test data, a mismatched pair)."""
        job = _Job(key, problem, solution)
        if solution.task_id != problem.task_id:
            job.result = ValueError(
                f"solution for {solution.task_id} judged against {problem.task_id}")
            return job
        try:
            job.plan = (self._plan(problem, solution.completion)
                        if problem.format == "assert" else None)
        except TestCodeError as err:  # the data is broken, not the program: say so
            job.result = Result(task_id=problem.task_id, sample_id=solution.sample_id,
                                outcome="fail", passed=0, total=len(problem.tests),
                                tests=["not_run"] * len(problem.tests),
                                error_type="TestCodeError", error_message=str(err),
                                isolation=self.tier)
            return job
        try:
            req = self._request(problem, solution.completion, job.plan)
            job.msg = encode_msg(req.to_wire())
        except Exception as exc:  # a malformed problem: reported under its key
            job.result = exc
            return job
        job.wait_s = req.budget_s + 30.0
        return job

    def _verdict(self, job: _Job) -> Result | BaseException:
        if isinstance(job.result, ForkServerDied):
            problem = job.problem
            return Result(task_id=problem.task_id, sample_id=job.solution.sample_id,
                          outcome="runtime_error", passed=0, total=len(problem.tests),
                          tests=["crash"] * len(problem.tests), error_type="SandboxCrash",
                          error_message=str(job.result),
                          duration_s=time.monotonic() - job.t0, isolation=self.tier)
        if job.result is not None:
            return job.result
        try:
            return judge_program(job.problem, job.resp, job.plan, tol=self.cfg.float_tolerance,
                                 sample_id=job.solution.sample_id)
        except Exception as exc:  # e.g. the fork-server's own failure: the caller reports it
            return exc

    def run(self, problem: Problem, solution: Solution) -> Result:
        with self._lock:
            lane = Lane(self, depth=1)
            lane.add(0, problem, solution)
            _, result = lane.next()
        if isinstance(result, BaseException):
            raise result
        return result

    def observe(self, problem: Problem, program: str) -> RunObservation:
        """The fork-server's raw observations of `program` on `problem`'s tests, unjudged.

        The request is the one `run` sends (for `call` problems only the inputs, never the
        expected outputs). Each of the answer's `tests` has a `status`; a `call` test that
        returned carries its value encoded (`value`, see `executor.serialize.decode`).
        Raises ForkServerDied when the sandbox dies twice on the program."""
        with self._lock:
            lane = Lane(self, depth=1)
            lane.add(0, problem, Solution(task_id=problem.task_id, completion=program))
            job = lane.jobs[0]
            while job.resp is None and job.result is None:
                lane.step()
        if isinstance(job.result, Result):  # broken test data
            raise TestCodeError(job.result.error_message)
        if job.result is not None:
            raise job.result
        return job.resp

    def _restart(self) -> None:
        server, self._server = self._server, None  # a failed start leaves no stale server
        if server is not None:
            try:
                server.proc.kill()
            except OSError:
                pass
            server.close()
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


class Lane:
    """The programs queued at one worker's fork-server, oldest first; not thread-safe.

    Up to `depth` requests wait at the fork-server, so it starts the next program while the
    caller judges the last one. Use it blocking (`next`) or from an event loop: select on
    `fileno()`, then `receive()`. A fork-server that dies is replaced and every queued
    request is sent again; a program it dies on twice is reported as a crash of that
    program."""

    def __init__(self, worker: Worker, depth: int = 2):
        self.worker = worker
        self.depth = depth
        self.jobs: deque[_Job] = deque()

    def room(self) -> bool:
        return len(self.jobs) < self.depth

    def add(self, key, problem: Problem, solution: Solution) -> None:
        self.jobs.append(self.worker._job(key, problem, solution))
        self.pump()

    def pump(self) -> None:
        """Send queued requests in order. One waits behind an unanswered one only if it fits
        in the request pipe, so a large request never blocks while the fork-server blocks on
        its answer."""
        if not self.jobs:
            return  # a dead fork-server is replaced when there is work for it
        server = self.worker._server
        if server is None or not server.alive():
            # Found dead: with the oldest request at it, that program is the likely cause.
            first = next((job for job in self.jobs if job.result is None), None)
            self._died(strike=first is not None and first.sent)
            server = self.worker._server
        waiting = False  # an earlier request is at the fork-server, unanswered
        for job in self.jobs:
            if job.result is not None:
                continue
            if not job.sent:
                if waiting and len(job.msg) > server.pipe_capacity // 2:
                    return
                try:
                    server.send(job.msg)
                except ForkServerDied:
                    self._died()
                    return
                job.sent = True
            waiting = True

    def _died(self, strike: bool = True) -> None:
        """The fork-server died with requests queued: the oldest undecided one (the program it
        was running) gets a strike; all are sent again to a new fork-server."""
        first = next((job for job in self.jobs if job.result is None), None)
        if first is not None and strike:
            first.tries += 1
            if first.tries >= 2:
                first.result = ForkServerDied("the sandbox died twice on this program")
        for job in self.jobs:
            job.sent = False
        self.worker._restart()  # last: if no new fork-server starts, nothing counts as sent

    def decided(self) -> bool:
        """Whether the oldest job has its answer (or needs none)."""
        return bool(self.jobs) and (self.jobs[0].result is not None
                                    or self.jobs[0].resp is not None)

    def fileno(self) -> int | None:
        """The descriptor the oldest job's answer arrives on (None: nothing to wait for)."""
        if self.jobs and not self.decided() and self.jobs[0].sent and self.worker._server:
            return self.worker._server.fileno()
        return None

    def receive(self) -> None:
        """Read the answer to the oldest job (blocks until it comes, or until the hello of a
        fork-server that was starting)."""
        job = self.jobs[0]
        try:
            job.resp = self.worker._server.receive(job.wait_s)
        except ForkServerDied:
            self._died()
            self.pump()

    def step(self) -> None:
        """Make progress on the oldest job, blocking."""
        if not self.decided():
            if not self.jobs[0].sent:
                self.pump()
            if self.jobs[0].sent and not self.decided():
                self.receive()

    def pop(self):
        """(key, Result or exception) of the oldest job, which must be decided."""
        job = self.jobs.popleft()
        self.pump()
        return job.key, self.worker._verdict(job)

    def next(self):
        """(key, Result or exception) of the oldest job, waiting for it."""
        while not self.decided():
            self.step()
        return self.pop()
