"""ExecutorPool: N executor workers judging programs in parallel, in-process or as Ray actors.

    with ExecutorPool(cfg.executor) as pool:                 # in this process, one event loop
        for index, result in pool.imap(pairs): ...           # as they finish
    with ExecutorPool(cfg.executor, use_ray=True) as pool:   # actors rltf-executor-<i>
        results = pool.run(pairs)                            # in submission order
        pool.submit(key, problem, solution); pool.poll(0.1)  # non-blocking use (the driver)
        pool.resize(4)                                       # grow or shrink while running

`imap` pulls work lazily and keeps at most `max_in_flight` programs per worker (backpressure);
with `submit`/`poll` the caller bounds its own backlog with `backlog()`. In-process, the workers'
fork-servers are driven from the caller's thread by `poll` (and `imap`/`run`), each with its next
request already queued, and results are judged there: no threads, no lock hand-offs. With Ray,
an actor that dies (killed, out of memory) is replaced and every program it held is submitted
again; each submitted program gets exactly one result.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any, Hashable, Iterable, Iterator

from executor.records import Problem, Result, Solution
from executor.worker import Lane, Worker

Pair = tuple[Problem, Solution]


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

    def __init__(self, pool: "ExecutorPool", n: int):
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


class ExecutorPool:
    def __init__(self, cfg=None, use_ray: bool = False, name_prefix: str = "rltf-executor"):
        from cluster.config import ExecutorConfig

        self.cfg = cfg or ExecutorConfig()
        self.use_ray = use_ray
        self.name_prefix = name_prefix
        self.replaced = 0
        self._closed = False
        self._queue: deque[tuple[Hashable, Pair]] = deque()
        self._submitted = 0
        # Results of submit()ted programs that arrived while imap() was waiting for its own;
        # the next poll() returns them, so mixing the two never loses a result.
        self._stash: list[tuple[Hashable, Result]] = []
        self._unplannable: dict[int, Problem] = {}  # problems whose tests cannot be planned
        if use_ray:
            import ray

            self._slots = _RaySlots(self, self.cfg.workers)
            self._infos = ray.get([a.info.remote() for a in self._slots.actors])
        else:
            # Work may be queued while the fork-servers start (the first assert tests are
            # rewritten meanwhile); one that cannot start raises at the first poll.
            self._workers = Worker.start_many(self.cfg, self.cfg.workers, wait=False)
            self._infos = []
            self._lanes = [Lane(w) for w in self._workers]

    # -- info --------------------------------------------------------------------------
    @property
    def size(self) -> int:
        return len(self._slots.active()) if self.use_ray else len(self._workers)

    def _info(self) -> list[dict]:
        if not self.use_ray and not self._infos and self._workers:
            self._infos = [{"isolation": w.ready().isolation, "tier": w.tier}
                           for w in self._workers]
        return self._infos

    @property
    def isolation(self) -> str:
        return self._info()[0]["isolation"] if self._info() else "none"

    @property
    def tier(self) -> str:
        return self._info()[0]["tier"] if self._info() else "none"

    def backlog(self) -> int:
        """Programs submitted and not yet returned by poll()."""
        if self.use_ray:
            held = sum(len(chunk) for chunk, _, _ in self._slots.inflight.values())
            return len(self._queue) + held + len(self._stash)
        return self._submitted + len(self._stash)

    def queue_depth(self) -> int:
        """Programs waiting for a free worker."""
        return len(self._queue)

    def busy_workers(self) -> int:
        if self.use_ray:
            return sum(1 for s in self._slots.active() if self._slots.load[s] > 0)
        return sum(1 for lane in self._lanes if lane.jobs)

    # -- Ray -------------------------------------------------------------------------------
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

    def _dispatch_ray(self) -> None:
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

    def _poll_ray(self, timeout_s: float) -> list[tuple[Hashable, Result]]:
        import ray
        from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

        s = self._slots
        self._dispatch_ray()
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
        self._dispatch_ray()
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
        """Grow or shrink the pool (Ray only). Shrinking retires the newest actors: they take no
        new work and are stopped once their programs are judged. Returns the new size."""
        if not self.use_ray:
            raise RuntimeError("resize() needs use_ray=True")
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

    # -- local: one event loop over the workers' fork-servers, in the caller's thread ----------
    def _dispatch_local(self) -> None:
        for lane in self._lanes:
            while self._queue and lane.room():
                key, (problem, solution) = self._queue.popleft()
                lane.add(key, problem, solution)

    def _poll_local(self, timeout_s: float) -> list[tuple[Hashable, Result]]:
        """Programs judged so far, waiting up to `timeout_s` for the first. The fork-servers
        only move on while this runs (each keeps its next request queued meanwhile)."""
        import select

        deadline = time.monotonic() + timeout_s
        out: list[tuple[Hashable, Result]] = []
        failure: BaseException | None = None
        while True:
            self._dispatch_local()
            waiting = {}
            for lane in self._lanes:
                while lane.decided():
                    key, res = lane.pop()
                    self._submitted -= 1
                    if isinstance(res, BaseException):
                        failure = failure or res
                    else:
                        out.append((key, res))
                self._dispatch_local()
                if lane.jobs and not lane.decided() and not lane.jobs[0].sent:
                    lane.pump()  # its fork-server died: replaced, and the request sent again
                fd = lane.fileno()
                if fd is not None:
                    waiting[fd] = lane
            remaining = deadline - time.monotonic()
            if out or failure or not waiting or remaining <= 0:
                break
            ready, _, _ = select.select(list(waiting), [], [], 0)
            if not ready and self._plan_ahead():
                continue  # a queued problem's tests rewritten while the sandboxes ran
            if not ready:
                ready, _, _ = select.select(list(waiting), [], [], remaining)
            for fd in ready:
                waiting[fd].receive()
        if failure is not None:
            self._stash.extend(out)  # returned by the next poll()
            raise failure
        return out

    def _plan_ahead(self, look: int = 16) -> bool:
        """While every fork-server is busy, rewrite the assert tests of one queued problem not
        seen before (the work its first program would otherwise do when its turn comes).
        True if it did."""
        plans = self._workers[0]._plans
        for i, (_, (problem, _)) in enumerate(self._queue):
            if i >= look:
                break
            if (problem.format == "assert" and id(problem) not in self._unplannable
                    and not plans.has(problem)):
                try:
                    plans.get(problem)
                except Exception:  # reported with its programs, in their turn
                    if not plans.has(problem):  # not kept: do not try again here
                        self._unplannable[id(problem)] = problem
                return True
        return False

    # -- public ----------------------------------------------------------------------------
    def submit(self, key: Hashable, problem: Problem, solution: Solution) -> None:
        """Queue one program; its result comes back from poll() under `key`."""
        if self._closed:
            raise RuntimeError("the executor pool is closed")
        if self.use_ray:
            self._queue.append((key, (problem, solution)))
            self._dispatch_ray()
        else:
            self._submitted += 1
            self._queue.append((key, (problem, solution)))
            self._dispatch_local()

    def poll(self, timeout_s: float = 0.0) -> list[tuple[Hashable, Result]]:
        """Results that are ready, waiting up to `timeout_s` for the first one."""
        if self._stash:
            out, self._stash = self._stash, []
            return out + self._poll_any(0.0)
        return self._poll_any(timeout_s)

    def _poll_any(self, timeout_s: float) -> list[tuple[Hashable, Result]]:
        return self._poll_ray(timeout_s) if self.use_ray else self._poll_local(timeout_s)

    def imap(self, pairs: Iterable[Pair]) -> Iterator[tuple[int, Result]]:
        """(index, Result) for every (problem, solution), in the order they finish.

        Safe to use while other programs are submitted with submit(): their results are kept
        for the next poll()."""
        if self._closed:
            raise RuntimeError("the executor pool is closed")
        tag = object()  # marks this call's keys
        items = (((tag, i), pair) for i, pair in enumerate(pairs))
        exhausted = False
        outstanding = 0
        while True:
            while (not exhausted and self.backlog() - len(self._stash)
                   < self.size * self.cfg.max_in_flight):
                nxt = next(items, None)
                if nxt is None:
                    exhausted = True
                    break
                self.submit(nxt[0], *nxt[1])
                outstanding += 1
            if exhausted and outstanding == 0:
                return
            for key, res in self._poll_any(1.0):
                if isinstance(key, tuple) and len(key) == 2 and key[0] is tag:
                    outstanding -= 1
                    yield key[1], res
                else:
                    self._stash.append((key, res))

    def run(self, pairs: Iterable[Pair]) -> list[Result]:
        """Results in the order of `pairs`."""
        out: dict[int, Result] = {}
        for idx, res in self.imap(pairs):
            out[idx] = res
        return [out[i] for i in range(len(out))]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.use_ray:
            import ray

            for actor in list(self._slots.actors) + list(self._slots.retired.values()):
                if actor is None:
                    continue
                try:
                    ray.kill(actor)
                except Exception:
                    pass
        else:
            try:
                self._info()  # kept for `isolation` and `tier` after the pool is closed
            except Exception:  # a fork-server that never started: nothing to keep
                pass
            for w in self._workers:
                w.close()

    def __enter__(self) -> "ExecutorPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
