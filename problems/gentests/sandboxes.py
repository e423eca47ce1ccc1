"""The sandboxes `rltf gen-tests` runs programs in: recorders, and the executor pool for verdicts.

    with LocalSandboxes(cfg.executor) as sb:
        out = sb.record(jobs, time_limit_s=1.0)           # {key: (slot, [Observation, ...])}
        results = sb.judge(pairs)                         # [Result, ...] in order

Recording (what a function returns on given inputs, `problems.gentests.probe`) needs the raw values,
which the executor pool's verdicts do not carry, so it runs on `Recorder`s, each holding an
executor `Worker` (a fork-server) of its own. Verdicts (the reference against its generated
tests, the mutants against them) go through an executor pool.

`Sandboxes` is what the pipeline uses; `LocalSandboxes` runs the recorders on threads of this
process and judges with the local `ExecutorPool`. The same interface on a Ray cluster, with
recorder actors and the Ray executor pool, is `cluster.gentests_sandboxes.RaySandboxes`. A job
with `avoid` set does not run on that slot (a rerun on another fork-server sees another
string-hash seed).
"""

from __future__ import annotations

import threading
from collections import deque


class Recorder:
    """Runs probe jobs on its own fork-server (a plain class; `cluster/` makes it an actor)."""

    def __init__(self, cfg):
        from executor.worker import Worker

        self.worker = Worker(cfg)

    def record(self, jobs: list, time_limit_s: float) -> list:
        """[(key, [Observation, ...])] of each problems.gentests.probe.ProbeJob, in order."""
        from problems.gentests.probe import Observation, record_outputs

        worker = self.worker
        out = []
        for job in jobs:
            try:
                obs = record_outputs(worker, job.source, job.fn_name, job.inputs,
                                     time_limit_s, job.trace)
            except Exception as exc:  # a sandbox that died twice: crashes of this job
                obs = [Observation("crash", error={"type": type(exc).__name__, "line": None,
                                                   "msg": str(exc)[:400]})
                       for _ in job.inputs]
            out.append((job.key, obs))
        return out

    def isolation(self) -> str:
        return self.worker.isolation

    def close(self) -> None:
        self.worker.close()


def take_jobs(todo: deque, slot: int, n: int, slots: int) -> list:
    """Up to `n` jobs from the front of `todo` that may run on `slot` (a job's `avoid` slot
    is skipped unless there is only one); the others keep their places."""
    out, keep = [], deque()
    while todo and len(out) < n:
        job = todo.popleft()
        (out if job.avoid != slot or slots == 1 else keep).append(job)
    todo.extendleft(reversed(keep))
    return out


class Sandboxes:
    """Recorders on `slots` fork-servers and an executor pool (`pool`) for verdicts.
    Subclasses set `cfg`, `slots`, `pool` and `isolation` (the sandbox's isolation tier) and
    implement `_record` and `_close_recorders`."""

    cfg = None
    slots = 1
    pool = None
    isolation = "unknown"

    def record(self, jobs: list, time_limit_s: float, batch: int = 8) -> dict:
        """{job.key: (slot, observations)} of every job."""
        return self._record(jobs, time_limit_s, batch) if jobs else {}

    def judge(self, pairs: list) -> list:
        """Results of (Problem, Solution) pairs from the executor pool, in order."""
        return self.pool.run(pairs) if pairs else []

    def close(self) -> None:
        self.pool.close()
        self._close_recorders()

    def _record(self, jobs: list, time_limit_s: float, batch: int) -> dict:
        raise NotImplementedError

    def _close_recorders(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> "Sandboxes":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class LocalSandboxes(Sandboxes):
    """Recorders on threads of this process, verdicts from the local `ExecutorPool`."""

    def __init__(self, cfg):
        from executor.pool import ExecutorPool

        self.cfg, self.slots = cfg, max(1, cfg.workers)
        self._recorders = [Recorder(cfg) for _ in range(self.slots)]
        self.isolation = self._recorders[0].isolation()
        self.pool = ExecutorPool(cfg)

    def _record(self, jobs: list, time_limit_s: float, batch: int) -> dict:
        todo, lock, out = deque(jobs), threading.Lock(), {}

        def serve(slot: int) -> None:
            while True:
                with lock:
                    chunk = take_jobs(todo, slot, 1, self.slots)
                if not chunk:
                    return
                for key, obs in self._recorders[slot].record(chunk, time_limit_s):
                    with lock:
                        out[key] = (slot, obs)

        threads = [threading.Thread(target=serve, args=(i,), daemon=True)
                   for i in range(self.slots)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return out

    def _close_recorders(self) -> None:
        for r in self._recorders:
            r.close()
