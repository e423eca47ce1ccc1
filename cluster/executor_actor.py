"""What each Ray executor actor runs (`cluster/executor_pool.py` creates them): a plain
`executor.worker.Worker` behind a small remote interface, for single programs, batches of
programs, and the parcels of training groups a sampler made, which it judges, turns into
experiences (`actors/experience.py`) and adds to the replay buffer itself.
"""

from __future__ import annotations

from actors.experience import Group, ParcelSummary, experiences_from_group
from core.records import Problem, Result, Solution
from executor.pool import Pair
from executor.worker import Lane, Worker


class ExecutorActor:
    """What each Ray executor actor runs: a Worker behind a small remote interface.

    Calls are queued to one thread that drives the worker's fork-server through a Lane, so
    the next program is already waiting at the fork-server while the current one runs, and
    Ray's per-call work overlaps with judging instead of adding to it. A call's programs are
    answered together: the event loop wakes once per call, not once per program."""

    def __init__(self, cfg):
        import queue
        import threading

        self.worker = Worker(cfg)
        self._jobs: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._serve, name="rltf-executor-lane",
                                        daemon=True)
        self._thread.start()

    async def run(self, problem: Problem, solution: Solution) -> Result:
        (res,) = await self.run_batch([(problem, solution)])
        if isinstance(res, BaseException):
            raise res
        return res

    async def run_batch(self, pairs: list[Pair]) -> list:
        """Several programs in one call (Ray's per-call work is paid once): their results in
        order, or, for a program the worker failed on, the exception."""
        import asyncio

        if not pairs:
            return []
        batch = _Batch(asyncio.get_running_loop(), len(pairs))
        for i, (problem, solution) in enumerate(pairs):
            self._jobs.put(((batch, i), problem, solution))
        return await batch.done

    async def judge_parcel(self, held: list, rcfg, buffer, parcel_id: str) -> ParcelSummary:
        """Judge a parcel (`held[0]`: the reference a sampler put in the object store, of
        `[(problem reference, a group's samples), ...]`; inside a list so that a lost one is
        this call's to report): every program of it in one batch, each group's experiences
        into `buffer` (the replay buffer actor) in one call, and the parcel's summary. The
        programs' outcomes and judging times go to the dashboard's metrics from here. A
        parcel whose samples were lost with their sampler is answered with `lost` set."""
        import asyncio

        from ray.exceptions import ObjectLostError

        from cluster.metrics import metrics

        try:
            contents = await held[0]
            problems = await asyncio.gather(*(ref for ref, _ in contents))
        except ObjectLostError as err:
            return ParcelSummary(parcel_id=parcel_id,
                                 lost=f"{type(err).__name__}: the sampler that held it died")
        pairs = [(problem, Solution(task_id=s.task_id, completion=s.program,
                                    sample_id=s.sample_id))
                 for problem, (_, samples) in zip(problems, contents) for s in samples]
        results = await self.run_batch(pairs)
        for res in results:
            if isinstance(res, BaseException):
                raise res
        summary, exps, at, m = ParcelSummary(parcel_id=parcel_id), [], 0, metrics()
        for problem, (_, samples) in zip(problems, contents):
            mine = results[at:at + len(samples)]
            at += len(samples)
            group = Group(problem, list(samples),
                          {s.sample_id: r for s, r in zip(samples, mine)})
            made, _ = experiences_from_group(group, rcfg)
            summary.add(group, made)
            exps += made
            for r in mine:
                m.observe("test_latency_s", r.duration_s)
        for outcome, n in summary.outcomes.items():
            m.inc("programs_executed", n, outcome=outcome)
        summary.kept = await buffer.add.remote(exps) if exps else 0
        return summary

    def _serve(self) -> None:
        import queue

        lane = Lane(self.worker, depth=2)
        while True:
            try:
                while lane.room():  # Lane.add queues every job before it can fail
                    try:
                        key, problem, solution = self._jobs.get(block=not lane.jobs)
                    except queue.Empty:
                        break
                    lane.add(key, problem, solution)
                (batch, i), res = lane.next()
            except BaseException as exc:  # the worker itself failed: say so to every caller
                for job in lane.jobs:
                    job_batch, job_i = job.key
                    job_batch.answer(job_i, exc)
                lane.jobs.clear()
                continue
            batch.answer(i, res)

    def info(self) -> dict:
        import os

        return {"isolation": self.worker.isolation, "tier": self.worker.tier,
                "pid": os.getpid(), "fork_server_pid": self.worker.fork_server_pid(),
                "restarts": self.worker.restarts}


class _Batch:
    """The programs of one actor call; answered (from the lane's thread) all at once."""

    __slots__ = ("loop", "done", "results", "left")

    def __init__(self, loop, n: int):
        self.loop = loop
        self.done = loop.create_future()
        self.results: list = [None] * n
        self.left = n

    def answer(self, i: int, res) -> None:
        self.results[i] = res
        self.left -= 1
        if self.left == 0:
            self.loop.call_soon_threadsafe(_settle, self.done, self.results)


def _settle(done, results) -> None:
    if not done.cancelled():
        done.set_result(results)
