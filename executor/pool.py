"""ExecutorPool: N executor workers judging programs in parallel, in-process or as Ray actors.

    with ExecutorPool(cfg.executor) as pool:                 # threads, one fork-server each
        for index, result in pool.imap(pairs): ...           # as they finish
    with ExecutorPool(cfg.executor, use_ray=True) as pool:   # actors rltf-executor-<i>
        results = pool.run(pairs)                            # in submission order

Work is pulled lazily from the input and at most `max_in_flight` programs wait per worker
(backpressure). With Ray, an actor that dies (killed, out of memory) is replaced and every
program it held is submitted again; each submitted program gets exactly one result.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from typing import Iterable, Iterator

from executor.records import Problem, Result, Solution
from executor.worker import Worker

Pair = tuple[Problem, Solution]


class ExecutorActor:
    """What each Ray executor actor runs: a Worker behind a small remote interface."""

    def __init__(self, cfg):
        self.worker = Worker(cfg)

    def run(self, problem: Problem, solution: Solution) -> Result:
        return self.worker.run(problem, solution)

    def info(self) -> dict:
        import os

        return {"isolation": self.worker.isolation, "tier": self.worker.tier,
                "pid": os.getpid(), "fork_server_pid": self.worker.fork_server_pid(),
                "restarts": self.worker.restarts}


class ExecutorPool:
    def __init__(self, cfg=None, use_ray: bool = False, name_prefix: str = "rltf-executor"):
        from cluster.config import ExecutorConfig

        self.cfg = cfg or ExecutorConfig()
        self.use_ray = use_ray
        self.name_prefix = name_prefix
        self.replaced = 0
        self._closed = False
        if use_ray:
            self._actors: list = []
            self._gens: list[int] = []
            for i in range(self.cfg.workers):
                self._actors.append(self._new_actor(i))
                self._gens.append(0)
            import ray

            self._infos = ray.get([a.info.remote() for a in self._actors])
        else:
            self._workers = [Worker(self.cfg) for _ in range(self.cfg.workers)]
            self._infos = [{"isolation": w.isolation, "tier": w.tier} for w in self._workers]

    # -- info --------------------------------------------------------------------------
    @property
    def size(self) -> int:
        return len(self._actors) if self.use_ray else len(self._workers)

    @property
    def isolation(self) -> str:
        return self._infos[0]["isolation"] if self._infos else "none"

    @property
    def tier(self) -> str:
        return self._infos[0]["tier"] if self._infos else "none"

    # -- Ray -------------------------------------------------------------------------------
    def _new_actor(self, slot: int, generation: int = 0):
        """An actor named `<prefix>-<slot>` (the name of a dead predecessor may still be held
        for a moment by Ray; then the replacement is named `<prefix>-<slot>.<generation>`)."""
        import time

        import ray

        cls = ray.remote(ExecutorActor)
        opts = {"num_cpus": self.cfg.cpus_per_worker, "max_restarts": 0,
                "max_concurrency": 1}
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

        try:
            ray.kill(self._actors[slot])
        except Exception:
            pass
        self._gens[slot] += 1
        self._actors[slot] = self._new_actor(slot, self._gens[slot])
        self.replaced += 1

    def _imap_ray(self, items: Iterator[tuple[int, Pair]]) -> Iterator[tuple[int, Result]]:
        import ray
        from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

        retry: deque[tuple[int, Pair]] = deque()
        inflight: dict = {}  # ref -> (index, pair, slot, generation)
        load = [0] * len(self._actors)
        exhausted = False
        while True:
            for slot in range(len(self._actors)):
                while load[slot] < self.cfg.max_in_flight:
                    if retry:
                        idx, pair = retry.popleft()
                    elif not exhausted:
                        nxt = next(items, None)
                        if nxt is None:
                            exhausted = True
                            break
                        idx, pair = nxt
                    else:
                        break
                    ref = self._actors[slot].run.remote(*pair)
                    inflight[ref] = (idx, pair, slot, self._gens[slot])
                    load[slot] += 1
            if not inflight:
                if exhausted and not retry:
                    return
                continue
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=5.0)
            for ref in ready:
                idx, pair, slot, gen = inflight.pop(ref)
                if gen == self._gens[slot]:
                    load[slot] -= 1
                try:
                    result = ray.get(ref)
                except (ActorDiedError, ActorUnavailableError, RayActorError):
                    if gen == self._gens[slot]:
                        # Everything this actor held is lost with it: resubmit it all.
                        for other, (i2, p2, s2, g2) in list(inflight.items()):
                            if s2 == slot and g2 == gen:
                                del inflight[other]
                                retry.append((i2, p2))
                        load[slot] = 0
                        self._replace(slot)
                    retry.append((idx, pair))
                    continue
                yield idx, result

    # -- threads -----------------------------------------------------------------------------
    def _imap_local(self, items: Iterator[tuple[int, Pair]]) -> Iterator[tuple[int, Result]]:
        todo: queue.Queue = queue.Queue(maxsize=len(self._workers) * self.cfg.max_in_flight)
        done: queue.Queue = queue.Queue()
        stop = object()

        def feed() -> None:
            try:
                for item in items:
                    todo.put(item)
            except BaseException as exc:  # surface errors of the input iterator
                done.put(("error", exc))
            finally:
                for _ in self._workers:
                    todo.put(stop)

        def serve(worker: Worker) -> None:
            while True:
                item = todo.get()
                if item is stop:
                    done.put(("stopped", None))
                    return
                idx, (problem, solution) = item
                try:
                    done.put(("ok", (idx, worker.run(problem, solution))))
                except BaseException as exc:
                    done.put(("error", exc))

        threads = [threading.Thread(target=feed, daemon=True)]
        threads += [threading.Thread(target=serve, args=(w,), daemon=True) for w in self._workers]
        for t in threads:
            t.start()
        stopped = 0
        while stopped < len(self._workers):
            kind, payload = done.get()
            if kind == "ok":
                yield payload
            elif kind == "stopped":
                stopped += 1
            else:
                raise payload

    # -- public ----------------------------------------------------------------------------
    def imap(self, pairs: Iterable[Pair]) -> Iterator[tuple[int, Result]]:
        """(index, Result) for every (problem, solution), in the order they finish."""
        if self._closed:
            raise RuntimeError("the executor pool is closed")
        items = iter(enumerate(pairs))
        return self._imap_ray(items) if self.use_ray else self._imap_local(items)

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

            for actor in self._actors:
                try:
                    ray.kill(actor)
                except Exception:
                    pass
        else:
            for w in self._workers:
                w.close()

    def __enter__(self) -> "ExecutorPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

