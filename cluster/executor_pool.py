"""The Ray executor pool: executor workers as Ray actors (`rltf-executor-<i>`), behind the same
interface as the local pool (`executor.pool.Pool`).

    with make_pool(cfg.executor, use_ray=True) as pool:     # RayExecutorPool
        results = pool.run(pairs)                            # in submission order
        pool.submit(key, problem, solution); pool.poll(0.1)  # non-blocking use (the driver)
        pool.resize(4)                                       # grow or shrink while running

Each actor runs an `ExecutorActor`: a plain `executor.worker.Worker` behind a small remote
interface (wrapped with `ray.remote` only here, where it is created). An actor that dies
(killed, out of memory) is replaced and every program it held is submitted again; each
submitted program gets exactly one result.
"""

from __future__ import annotations

import time
from typing import Any, Hashable

from executor.pool import ExecutorPool, Pair, Pool, PoolBase
from core.records import Problem, Result, Solution
from executor.worker import Lane, Worker


def make_pool(cfg=None, use_ray: bool = False, name_prefix: str = "rltf-executor") -> Pool:
    """The Ray pool (actors `<name_prefix>-<i>`) with `use_ray`, else the local one."""
    return RayExecutorPool(cfg, name_prefix) if use_ray else ExecutorPool(cfg)


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


class _RaySlots:
    """Ray actors with per-actor in-flight accounting, replacement and retirement."""

    def __init__(self, pool: "RayExecutorPool", n: int):
        self.pool = pool
        self.actors: list = []
        self.gens: list[int] = []
        self.load: list[int] = []  # programs each actor holds
        self.calls: list[int] = []  # calls each actor has not answered yet
        self.retired: dict[int, Any] = {}  # slot -> actor draining before it is killed
        self.inflight: dict = {}  # ref -> ([(key, pair), ...], slot, generation)
        for _ in range(n):
            self.add()

    def add(self) -> None:
        slot = len(self.actors)
        self.actors.append(self.pool._new_actor(slot))
        self.gens.append(0)
        self.load.append(0)
        self.calls.append(0)

    def active(self) -> list[int]:
        return [s for s, a in enumerate(self.actors) if a is not None and s not in self.retired]


class RayExecutorPool(PoolBase):
    """`cfg.workers` executor actors, each holding at most `max_in_flight` programs."""

    def __init__(self, cfg=None, name_prefix: str = "rltf-executor"):
        import ray

        super().__init__(cfg)
        self.name_prefix = name_prefix
        self._slots = _RaySlots(self, self.cfg.workers)
        self._infos = ray.get([a.info.remote() for a in self._slots.actors])

    @property
    def size(self) -> int:
        return len(self._slots.active())

    def _info(self) -> list[dict]:
        return self._infos

    def backlog(self) -> int:
        """Programs submitted and not yet returned by poll()."""
        held = sum(len(chunk) for chunk, _, _ in self._slots.inflight.values())
        return len(self._queue) + held + len(self._stash)

    def busy_workers(self) -> int:
        return sum(1 for s in self._slots.active() if self._slots.load[s] > 0)

    def submit(self, key: Hashable, problem: Problem, solution: Solution) -> None:
        """Queue one program; its result comes back from poll() under `key`."""
        self._check_open()
        self._queue.append((key, (problem, solution)))
        self._dispatch()

    def _new_actor(self, slot: int, generation: int = 0):
        """An actor named `<prefix>-<slot>` (the name of a dead predecessor may still be held
        for a moment by Ray; then the replacement is named `<prefix>-<slot>.<generation>`)."""
        import ray

        cls = ray.remote(ExecutorActor)
        # Up to max_in_flight calls wait in the actor (see ExecutorActor), one thread runs them.
        opts = {"num_cpus": self.cfg.cpus_per_worker, "max_restarts": 0,
                "max_concurrency": self.cfg.max_in_flight + 2}
        if self.cfg.resources:
            opts["resources"] = dict(self.cfg.resources)
        for attempt in range(20):
            name = f"{self.name_prefix}-{slot}" if attempt < 10 else \
                f"{self.name_prefix}-{slot}.{generation}"
            try:
                return cls.options(name=name, **opts).remote(self.cfg)
            except ValueError:  # name taken
                time.sleep(0.05)
        return cls.options(**opts).remote(self.cfg)

    def _replace(self, slot: int) -> None:
        import ray

        s = self._slots
        try:
            ray.kill(s.actors[slot])
        except Exception:
            pass
        s.gens[slot] += 1
        s.load[slot] = 0
        s.calls[slot] = 0
        s.actors[slot] = self._new_actor(slot, s.gens[slot])
        self.replaced += 1

    def _dispatch(self) -> None:
        """Queued programs to actors, each holding at most `max_in_flight` programs in at most
        two calls of up to `ray_batch` programs: one call runs in the actor while the other's
        results travel back. An idle actor takes whatever is queued; one with a call running
        takes a second only when a whole batch is queued, so that programs submitted one by
        one still travel together."""
        s = self._slots
        most = max(1, min(self.cfg.ray_batch, (self.cfg.max_in_flight + 1) // 2))
        for slot in s.active():
            while s.load[slot] < self.cfg.max_in_flight and self._queue and (
                    s.calls[slot] == 0 or (s.calls[slot] == 1 and len(self._queue) >= most)):
                n = min(most, self.cfg.max_in_flight - s.load[slot], len(self._queue))
                chunk = [self._queue.popleft() for _ in range(n)]
                ref = s.actors[slot].run_batch.remote([pair for _, pair in chunk])
                s.inflight[ref] = (chunk, slot, s.gens[slot])
                s.load[slot] += n
                s.calls[slot] += 1

    def _poll_any(self, timeout_s: float) -> list[tuple[Hashable, Result]]:
        import ray
        from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

        s = self._slots
        self._dispatch()
        if not s.inflight:
            if timeout_s > 0:
                time.sleep(min(timeout_s, 0.05))
            return []
        refs = list(s.inflight)
        # Wait for the first call to come back, then take every other one already back
        # (waiting for all of them would leave actors idle until the slowest call ends).
        ready, _ = ray.wait(refs, num_returns=1, timeout=timeout_s, fetch_local=False)
        if ready and len(refs) > 1:
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0, fetch_local=False)
        out = []
        failure: BaseException | None = None
        for ref in ready:
            item = s.inflight.pop(ref, None)
            if item is None:  # already resubmitted with the rest of a dead actor's work
                continue
            chunk, slot, gen = item
            current = gen == s.gens[slot]
            if current:
                s.load[slot] -= len(chunk)
                s.calls[slot] -= 1
            try:
                results = ray.get(ref)
            except (ActorDiedError, ActorUnavailableError, RayActorError):
                if current and slot not in s.retired:
                    # Everything this actor held is lost with it: submit it all again.
                    for other, (chunk2, s2, g2) in list(s.inflight.items()):
                        if s2 == slot and g2 == gen:
                            del s.inflight[other]
                            self._queue.extendleft(reversed(chunk2))
                    self._replace(slot)
                self._queue.extendleft(reversed(chunk))
                continue
            except Exception as exc:  # the call itself failed: every program in it did
                results = [exc] * len(chunk)
            for (key, _), res in zip(chunk, results):
                if isinstance(res, BaseException):
                    failure = failure or res
                else:
                    out.append((key, res))
        self._reap_retired()
        self._dispatch()
        if failure is not None:
            self._stash.extend(out)  # returned by the next poll()
            raise failure
        return out

    def _reap_retired(self) -> None:
        import ray

        s = self._slots
        for slot, actor in list(s.retired.items()):
            if s.load[slot] <= 0:
                try:
                    ray.kill(actor)
                except Exception:
                    pass
                del s.retired[slot]
                s.actors[slot] = None
        while s.actors and s.actors[-1] is None:
            s.actors.pop()
            s.gens.pop()
            s.load.pop()
            s.calls.pop()

    def resize(self, n: int) -> int:
        """Grow or shrink the pool. Shrinking retires the newest actors: they take no
        new work and are stopped once their programs are judged. Returns the new size."""
        if n < 1:
            raise ValueError(f"the executor pool needs at least 1 actor (got {n})")
        s = self._slots
        for slot in sorted(s.retired, reverse=True):  # bring back draining actors first
            if len(s.active()) >= n:
                break
            s.actors[slot] = s.retired.pop(slot)
        while len(s.active()) < n:
            s.add()
        for slot in sorted(s.active(), reverse=True)[: max(0, len(s.active()) - n)]:
            s.retired[slot] = s.actors[slot]
        self._reap_retired()
        return self.size

    def _close(self) -> None:
        import ray

        for actor in list(self._slots.actors) + list(self._slots.retired.values()):
            if actor is None:
                continue
            try:
                ray.kill(actor)
            except Exception:
                pass
