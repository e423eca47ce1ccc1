"""The Ray executor pool: executor workers as Ray actors (`rltf-executor-<i>`), behind the same
interface as the local pool (`executor.pool.Pool`).

    with make_pool(cfg.executor, use_ray=True) as pool:     # RayExecutorPool
        results = pool.run(pairs)                            # in submission order
        pool.submit(key, problem, solution); pool.poll(0.1)  # non-blocking use (the driver)
        pool.resize(4)                                       # grow or shrink while running
        pool.submit_parcel(key, n, args); pool.poll_parcels()  # a sampler's parcel (training)

Each actor runs an `ExecutorActor` (`cluster/executor_actor.py`): a plain
`executor.worker.Worker` behind a small remote interface (wrapped with `ray.remote` only here,
where it is created). An actor that dies
(killed, out of memory) is replaced and every program it held is submitted again; each
submitted program gets exactly one result.

Training hands the pool parcels (`actors/samples.py:Parcel`: whole groups of samples from one
sampler call) by reference: one actor fetches the parcel from the sampler that put it in the
object store, judges its programs, turns them into experiences (`actors/experience.py`), adds
those to the replay buffer and answers with a small `ParcelSummary` of counts, so that no
program, result or experience passes through the driver. A parcel whose actor dies is judged
again by another (the buffer drops experiences it already holds); a parcel whose sampler died
before it was fetched is answered as lost.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any, Hashable

from actors.experience import ParcelSummary
from cluster.executor_actor import ExecutorActor
from core.records import Problem, Result, Solution
from executor.pool import ExecutorPool, Pool, PoolBase


def make_pool(cfg=None, use_ray: bool = False, name_prefix: str = "rltf-executor") -> Pool:
    """The Ray pool (actors `<name_prefix>-<i>`) with `use_ray`, else the local one."""
    return RayExecutorPool(cfg, name_prefix) if use_ray else ExecutorPool(cfg)


class _RaySlots:
    """Ray actors with per-actor in-flight accounting, replacement and retirement."""

    def __init__(self, pool: "RayExecutorPool", n: int):
        self.pool = pool
        self.actors: list = []
        self.gens: list[int] = []
        self.load: list[int] = []  # programs each actor holds
        self.calls: list[int] = []  # calls each actor has not answered yet
        self.retired: dict[int, Any] = {}  # slot -> actor draining before it is killed
        self.inflight: dict = {}  # ref -> ([(key, pair), ...] or a _ParcelJob, slot, generation)
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


class _ParcelJob:
    """A parcel for one actor's `judge_parcel`: `n` programs, its summary under `key`."""

    __slots__ = ("key", "n", "args")

    def __init__(self, key: Hashable, n: int, args: tuple):
        self.key, self.n, self.args = key, n, args

    def __len__(self) -> int:
        return self.n


class RayExecutorPool(PoolBase):
    """`cfg.workers` executor actors, each holding at most `max_in_flight` programs."""

    def __init__(self, cfg=None, name_prefix: str = "rltf-executor"):
        import ray

        super().__init__(cfg)
        self.name_prefix = name_prefix
        self._parcels: deque[_ParcelJob] = deque()  # parcels waiting for an actor
        self._judged: list[tuple[Hashable, ParcelSummary]] = []  # for the next poll_parcels()
        self._slots = _RaySlots(self, self.cfg.workers)
        self._infos = ray.get([a.info.remote() for a in self._slots.actors])

    @property
    def size(self) -> int:
        return len(self._slots.active())

    def _info(self) -> list[dict]:
        return self._infos

    def in_flight(self) -> list:
        """The references of the actor calls in flight, for a caller that waits for the
        pool among other things (the training driver's wait phase)."""
        return list(self._slots.inflight)

    def backlog(self) -> int:
        """Programs submitted and not yet returned by poll()."""
        held = sum(len(chunk) for chunk, _, _ in self._slots.inflight.values())
        return self.queue_depth() + held + len(self._stash)

    def queue_depth(self) -> int:
        """Programs waiting for an actor, those of waiting parcels included."""
        return len(self._queue) + sum(job.n for job in self._parcels)

    def busy_workers(self) -> int:
        return sum(1 for s in self._slots.active() if self._slots.load[s] > 0)

    def submit(self, key: Hashable, problem: Problem, solution: Solution) -> None:
        """Queue one program; its result comes back from poll() under `key`."""
        self._check_open()
        self._queue.append((key, (problem, solution)))
        self._dispatch()

    def submit_parcel(self, key: Hashable, n: int, args: tuple) -> None:
        """Queue a parcel of `n` programs for one actor's `judge_parcel(*args)`; its summary
        comes back from poll_parcels() under `key`. The actor's load counts the parcel's
        programs."""
        self._check_open()
        self._parcels.append(_ParcelJob(key, n, args))
        self._dispatch()

    def poll_parcels(self, timeout_s: float = 0.0) -> list[tuple[Hashable, ParcelSummary]]:
        """Summaries of the parcels judged, waiting up to `timeout_s` for one when none is;
        program results that come back meanwhile are kept for poll()."""
        if not self._judged:
            self._stash.extend(self._poll_any(timeout_s))
        out, self._judged = self._judged, []
        return out

    def _requeue(self, chunk) -> None:
        """Work a dead actor held, to the front of its queue."""
        if isinstance(chunk, _ParcelJob):
            self._parcels.appendleft(chunk)
        else:
            self._queue.extendleft(reversed(chunk))

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
        # parcels: each to the least loaded actor with room (a parcel larger than
        # max_in_flight goes to an idle one)
        while self._parcels:
            room = [slot for slot in s.active() if s.load[slot] < self.cfg.max_in_flight]
            if not room:
                break
            slot = min(room, key=lambda i: s.load[i])
            job = self._parcels.popleft()
            ref = s.actors[slot].judge_parcel.remote(*job.args)
            s.inflight[ref] = (job, slot, s.gens[slot])
            s.load[slot] += job.n
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
                            self._requeue(chunk2)
                    self._replace(slot)
                self._requeue(chunk)
                continue
            except Exception as exc:  # the call itself failed: every program in it did
                if isinstance(chunk, _ParcelJob):
                    failure = failure or exc
                    continue
                results = [exc] * len(chunk)
            if isinstance(chunk, _ParcelJob):
                self._judged.append((chunk.key, results))
                continue
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
        self._dispatch()  # new actors take waiting work now
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
