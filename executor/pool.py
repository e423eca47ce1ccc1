"""Executor pools: N executor workers judging programs in parallel behind one interface.

    with ExecutorPool(cfg.executor) as pool:                 # in this process, one event loop
        for index, result in pool.imap(pairs): ...           # as they finish
        results = pool.run(pairs)                            # in submission order
        pool.submit(key, problem, solution); pool.poll(0.1)  # non-blocking use (the driver)

`Pool` is what every pool offers; `ExecutorPool` (here) runs the workers in this process, and
`cluster.executor_pool.RayExecutorPool` runs them as Ray actors (`cluster.executor_pool.
make_pool` picks one). Both share `PoolBase`: results of submitted programs are kept while
`imap` waits for its own, so mixing the two never loses a result.

`imap` pulls work lazily and keeps at most `max_in_flight` programs per worker (backpressure);
with `submit`/`poll` the caller bounds its own backlog with `backlog()`. In-process, the workers'
fork-servers are driven from the caller's thread by `poll` (and `imap`/`run`), each with its next
request already queued, and results are judged there: no threads, no lock hand-offs.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Hashable, Iterable, Iterator, Protocol

from core.config import ExecutorConfig
from core.records import Problem, Result, Solution
from executor.worker import Lane, Worker

Pair = tuple[Problem, Solution]


class Pool(Protocol):
    """What the driver, the evaluation and the test generator use of an executor pool."""

    cfg: ExecutorConfig
    replaced: int  # workers replaced after they died

    @property
    def size(self) -> int: ...
    @property
    def isolation(self) -> str: ...
    @property
    def tier(self) -> str: ...
    def submit(self, key: Hashable, problem: Problem, solution: Solution) -> None: ...
    def poll(self, timeout_s: float = 0.0) -> list[tuple[Hashable, Result]]: ...
    def backlog(self) -> int: ...
    def queue_depth(self) -> int: ...
    def busy_workers(self) -> int: ...
    def imap(self, pairs: Iterable[Pair]) -> Iterator[tuple[int, Result]]: ...
    def run(self, pairs: Iterable[Pair]) -> list[Result]: ...
    def resize(self, n: int) -> int: ...
    def close(self) -> None: ...
    def __enter__(self) -> "Pool": ...
    def __exit__(self, *exc) -> None: ...


class PoolBase:
    """The part every pool shares: the queue, `poll`'s stash, `imap`, `run`, closing.

    A subclass provides `submit`, `_poll_any` (results ready, waiting up to a timeout for the
    first), `backlog`, `busy_workers`, `size`, `_info` and `_close`."""

    def __init__(self, cfg: ExecutorConfig | None = None):
        self.cfg = cfg or ExecutorConfig()
        self.replaced = 0
        self._closed = False
        self._queue: deque[tuple[Hashable, Pair]] = deque()
        # Results of submit()ted programs that arrived while imap() was waiting for its own;
        # the next poll() returns them, so mixing the two never loses a result.
        self._stash: list[tuple[Hashable, Result]] = []

    # -- info --------------------------------------------------------------------------
    @property
    def size(self) -> int:
        raise NotImplementedError

    def _info(self) -> list[dict]:
        raise NotImplementedError

    @property
    def isolation(self) -> str:
        return self._info()[0]["isolation"] if self._info() else "none"

    @property
    def tier(self) -> str:
        return self._info()[0]["tier"] if self._info() else "none"

    def queue_depth(self) -> int:
        """Programs waiting for a free worker."""
        return len(self._queue)

    # -- public ----------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the executor pool is closed")

    def _poll_any(self, timeout_s: float) -> list[tuple[Hashable, Result]]:
        raise NotImplementedError

    def poll(self, timeout_s: float = 0.0) -> list[tuple[Hashable, Result]]:
        """Results that are ready, waiting up to `timeout_s` for the first one."""
        if self._stash:
            out, self._stash = self._stash, []
            return out + self._poll_any(0.0)
        return self._poll_any(timeout_s)

    def imap(self, pairs: Iterable[Pair]) -> Iterator[tuple[int, Result]]:
        """(index, Result) for every (problem, solution), in the order they finish.

        Safe to use while other programs are submitted with submit(): their results are kept
        for the next poll()."""
        self._check_open()
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

    def _close(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ExecutorPool(PoolBase):
    """The local pool: `cfg.workers` workers of this process, driven by one event loop in the
    caller's thread."""

    def __init__(self, cfg=None):
        super().__init__(cfg)
        self._submitted = 0
        self._unplannable: dict[int, Problem] = {}  # problems whose tests cannot be planned
        # Work may be queued while the fork-servers start (the first assert tests are
        # rewritten meanwhile); one that cannot start raises at the first poll.
        self._workers = Worker.start_many(self.cfg, self.cfg.workers, wait=False)
        self._infos: list[dict] = []
        self._lanes = [Lane(w) for w in self._workers]

    @property
    def size(self) -> int:
        return len(self._workers)

    def _info(self) -> list[dict]:
        if not self._infos and self._workers:
            self._infos = [{"isolation": w.ready().isolation, "tier": w.tier}
                           for w in self._workers]
        return self._infos

    def backlog(self) -> int:
        """Programs submitted and not yet returned by poll()."""
        return self._submitted + len(self._stash)

    def busy_workers(self) -> int:
        return sum(1 for lane in self._lanes if lane.jobs)

    def resize(self, n: int) -> int:
        raise RuntimeError("resize() needs the Ray pool (cluster.executor_pool)")

    def submit(self, key: Hashable, problem: Problem, solution: Solution) -> None:
        """Queue one program; its result comes back from poll() under `key`."""
        self._check_open()
        self._submitted += 1
        self._queue.append((key, (problem, solution)))
        self._dispatch()

    # -- one event loop over the workers' fork-servers, in the caller's thread -------------
    def _dispatch(self) -> None:
        for lane in self._lanes:
            while self._queue and lane.room():
                key, (problem, solution) = self._queue.popleft()
                lane.add(key, problem, solution)

    def _poll_any(self, timeout_s: float) -> list[tuple[Hashable, Result]]:
        """Programs judged so far, waiting up to `timeout_s` for the first. The fork-servers
        only move on while this runs (each keeps its next request queued meanwhile)."""
        import select

        deadline = time.monotonic() + timeout_s
        out: list[tuple[Hashable, Result]] = []
        failure: BaseException | None = None
        while True:
            self._dispatch()
            waiting = {}
            for lane in self._lanes:
                while lane.decided():
                    key, res = lane.pop()
                    self._submitted -= 1
                    if isinstance(res, BaseException):
                        failure = failure or res
                    else:
                        out.append((key, res))
                self._dispatch()
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

    def _close(self) -> None:
        try:
            self._info()  # kept for `isolation` and `tier` after the pool is closed
        except Exception:  # a fork-server that never started: nothing to keep
            pass
        for w in self._workers:
            w.close()
