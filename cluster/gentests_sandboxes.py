"""`rltf gen-tests --ray`: the test generator's sandboxes as Ray actors on the cluster.

`RaySandboxes` has the interface of `problems.gentests.sandboxes.Sandboxes`: its recorders
(`problems.gentests.sandboxes.Recorder`) run as actors named `rltf-gen-<i>`, with the
executor's CPU and custom resources so that they land where executor actors do, and verdicts
come from the Ray executor pool (`cluster.executor_pool.RayExecutorPool`). A recorder that
dies is replaced and its jobs run again, elsewhere if they must avoid its slot.
"""

from __future__ import annotations

from collections import deque

import ray
from ray.exceptions import RayActorError

from cluster.executor_pool import RayExecutorPool
from problems.gentests.sandboxes import Recorder, Sandboxes, take_jobs


class RaySandboxes(Sandboxes):
    """Recorder actors and the Ray executor pool; `replaced` counts recorders replaced."""

    def __init__(self, cfg, name_prefix: str = "rltf-gen"):
        self.cfg, self.slots = cfg, max(1, cfg.workers)
        self.name_prefix = name_prefix
        self._actors = [self._new_actor(i) for i in range(self.slots)]
        self.isolation = ray.get(self._actors[0].isolation.remote())
        self.pool = RayExecutorPool(cfg)
        self.replaced = 0

    def _new_actor(self, slot: int):
        opts = {"num_cpus": self.cfg.cpus_per_worker, "max_restarts": 0}
        if self.cfg.resources:
            opts["resources"] = dict(self.cfg.resources)
        cls = ray.remote(Recorder)
        try:
            return cls.options(name=f"{self.name_prefix}-{slot}", **opts).remote(self.cfg)
        except ValueError:  # the name is still held (a replaced actor): go unnamed
            return cls.options(**opts).remote(self.cfg)

    def _record(self, jobs: list, time_limit_s: float, batch: int) -> dict:
        todo, out, inflight = deque(jobs), {}, {}
        load = [0] * self.slots
        while todo or inflight:
            for slot in range(self.slots):
                while load[slot] < 2 and todo:
                    chunk = take_jobs(todo, slot, batch, self.slots)
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

    def _close_recorders(self) -> None:
        for actor in self._actors:
            try:
                ray.kill(actor)
            except Exception:
                pass
