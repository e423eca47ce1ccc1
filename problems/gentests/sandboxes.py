"""The sandboxes `rltf gen-tests` runs programs in: recorders, and the executor pool for verdicts.

    with Sandboxes(cfg.executor, use_ray=False) as sb:
        out = sb.record(jobs, time_limit_s=1.0)           # {key: (slot, [Observation, ...])}
        results = sb.judge(pairs)                         # [Result, ...] in order

Recording (what a function returns on given inputs, `problems.gentests.probe`) needs the raw values,
which the executor pool's verdicts do not carry, so it runs on `Recorder`s, each holding an
executor `Worker` (a fork-server) of its own. Verdicts (the reference against its generated
tests, the mutants against them) go through the project's `ExecutorPool`, in this process or
as its Ray executor actors.

With `use_ray`, the recorders are Ray actors too (`rltf-gen-<i>`, with the executor's CPU
and custom resources, so they land where executor actors do); a recorder that dies is
replaced and its jobs run again elsewhere. A job with `avoid` set does not run on that slot
(a rerun on another fork-server sees another string-hash seed).
"""

from __future__ import annotations

from collections import deque


class Recorder:
    """Runs probe jobs on its own fork-servers (plain class; a Ray actor with --ray)."""

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


class Sandboxes:
    def __init__(self, cfg, use_ray: bool = False, name_prefix: str = "rltf-gen"):
        from cluster.executor_pool import make_pool

        self.cfg, self.use_ray = cfg, use_ray
        self.name_prefix = name_prefix
        self.slots = max(1, cfg.workers)
        if use_ray:
            import ray

            self._actors = [self._new_actor(i) for i in range(self.slots)]
            self.isolation = ray.get(self._actors[0].isolation.remote())
        else:
            self._recorders = [Recorder(cfg) for _ in range(self.slots)]
            self.isolation = self._recorders[0].isolation()
        self.pool = make_pool(cfg, use_ray=use_ray)
        self.replaced = 0

    def _new_actor(self, slot: int):
        import ray

        opts = {"num_cpus": self.cfg.cpus_per_worker, "max_restarts": 0}
        if self.cfg.resources:
            opts["resources"] = dict(self.cfg.resources)
        cls = ray.remote(Recorder)
        try:
            return cls.options(name=f"{self.name_prefix}-{slot}", **opts).remote(self.cfg)
        except ValueError:  # the name is still held (a replaced actor): go unnamed
            return cls.options(**opts).remote(self.cfg)

    # -- recording ---------------------------------------------------------------------------
    def record(self, jobs: list, time_limit_s: float, batch: int = 8) -> dict:
        """{job.key: (slot, observations)} of every job."""
        if not jobs:
            return {}
        if self.use_ray:
            return self._record_ray(jobs, time_limit_s, batch)
        return self._record_local(jobs, time_limit_s)

    def _take(self, todo: deque, slot: int, n: int) -> list:
        out, keep = [], deque()
        while todo and len(out) < n:
            job = todo.popleft()
            (out if job.avoid != slot or self.slots == 1 else keep).append(job)
        todo.extendleft(reversed(keep))
        return out

    def _record_local(self, jobs: list, time_limit_s: float) -> dict:
        import threading

        todo, lock, out = deque(jobs), threading.Lock(), {}

        def serve(slot: int) -> None:
            while True:
                with lock:
                    chunk = self._take(todo, slot, 1)
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

    def _record_ray(self, jobs: list, time_limit_s: float, batch: int) -> dict:
        import ray
        from ray.exceptions import RayActorError

        todo, out, inflight = deque(jobs), {}, {}
        load = [0] * self.slots
        while todo or inflight:
            for slot in range(self.slots):
                while load[slot] < 2 and todo:
                    chunk = self._take(todo, slot, batch)
                    if not chunk:
                        break
                    ref = self._actors[slot].record.remote(chunk, time_limit_s)
                    inflight[ref] = (slot, chunk)
                    load[slot] += 1
            if not inflight:
                raise RuntimeError("record jobs left that no recorder may run")
            ready, _ = ray.wait(list(inflight), num_returns=1)
            for ref in ready:
                slot, chunk = inflight.pop(ref)
                load[slot] -= 1
                try:
                    answers = ray.get(ref)
                except RayActorError:  # the recorder died: a new one, and its jobs again
                    for other, (s2, c2) in list(inflight.items()):
                        if s2 == slot:
                            del inflight[other]
                            todo.extendleft(reversed(c2))
                    load[slot] = 0
                    self._actors[slot] = self._new_actor(slot)
                    self.replaced += 1
                    todo.extendleft(reversed(chunk))
                    continue
                for key, obs in answers:
                    out[key] = (slot, obs)
        return out

    # -- verdicts -----------------------------------------------------------------------------
    def judge(self, pairs: list) -> list:
        """Results of (Problem, Solution) pairs from the executor pool, in order."""
        return self.pool.run(pairs) if pairs else []

    def close(self) -> None:
        self.pool.close()
        if self.use_ray:
            import ray

            for actor in self._actors:
                try:
                    ray.kill(actor)
                except Exception:
                    pass
        else:
            for r in self._recorders:
                r.close()

    def __enter__(self) -> "Sandboxes":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
