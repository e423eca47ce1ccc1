"""Builds the actor topology of a training run from the config, each pool sized and placed on
its own resources:

* samplers: `rltf-sampler-<i>` (a GPU each on a cluster; CPUs here),
* executor pool: `rltf-executor-<i>` (CPU only, optional custom resource),
* replay buffer: `rltf-buffer`, weight store: `rltf-weights`,
* learner group: `rltf-learner-rank<i>` in one placement group.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from actors.replay_buffer import ReplayBuffer
from cluster.weights import WEIGHT_STORE_NAME, WeightStore


class SamplerActor:
    """What each sampler actor runs: a Sampler that keeps itself on the latest weights."""

    def __init__(self, model_path: str, index: int, seed: int, device: str = "cpu",
                 dtype: str = "float32"):
        import torch

        from actors.sampler import Sampler

        if device == "cpu":
            torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
        self.sampler = Sampler(model_path, device=device, dtype=dtype,
                               seed=seed + 7919 * index)
        self.index = index
        self.collective = None
        self.sync_s = 0.0

    def _sync_from_store(self) -> None:
        import ray

        try:
            store = ray.get_actor(WEIGHT_STORE_NAME)
        except ValueError:
            return
        version = ray.get(store.latest_version.remote())
        if version > self.sampler.policy_version:
            t0 = time.perf_counter()
            version, refs = ray.get(store.latest.remote())
            if refs:
                try:
                    state = ray.get(refs[0])
                except ray.exceptions.RayError as err:  # lost with a dead learner rank
                    print(f"rltf-sampler-{self.index}: weights version {version} could not "
                          f"be fetched ({type(err).__name__}); keeping version "
                          f"{self.sampler.policy_version}", flush=True)
                    return
                self.sampler.load_weights(state, version)
            self.sync_s = time.perf_counter() - t0

    def generate(self, problems: list, settings: Any, sync: bool = True) -> list:
        if sync and self.collective is None:
            self._sync_from_store()
        return self.sampler.generate(problems, settings)

    def version(self) -> int:
        return self.sampler.policy_version

    def join_collective(self, backend: str, addr: str, port: int, world: int,
                        rank: int | None = None) -> bool:
        """Join the broadcast group as `rank` (default: index + 1; the learner is rank 0)."""
        from cluster.weights import CollectiveGroup

        self.collective = CollectiveGroup(backend, addr, port, world,
                                          self.index + 1 if rank is None else rank)
        return True

    def receive_broadcast(self, bucket_mb: float = 64.0) -> int:
        t0 = time.perf_counter()
        version, state = self.collective.broadcast_state(None, bucket_mb=bucket_mb)
        self.sampler.load_weights(state, version)
        self.sync_s = time.perf_counter() - t0
        return version

    def weights_digest(self) -> dict:
        """The sampler's weights (CPU copies), to compare across processes in tests."""
        return self.sampler.get_weights()


@dataclass
class Topology:
    samplers: list
    pool: Any
    buffer: Any
    store: Any
    learner: Any
    controller: Any = None

    def shutdown(self, keep_controller: bool = False) -> None:
        import ray

        for a in self.samplers:
            try:
                ray.kill(a)
            except Exception:
                pass
        for closer in (self.pool.close, self.learner.shutdown):
            try:
                closer()
            except Exception:
                pass
        for a in (self.buffer, self.store, None if keep_controller else self.controller):
            if a is None:
                continue
            try:
                ray.kill(a)
            except Exception:
                pass


def sampler_options(cfg, index: int) -> dict:
    s = cfg.sampler
    return {"name": f"rltf-sampler-{index}", "num_cpus": s.cpus_per_actor,
            "num_gpus": s.gpus_per_actor, "max_restarts": 0,
            "runtime_env": {"env_vars": {"OMP_NUM_THREADS": str(max(1, int(s.cpus_per_actor)))}}}


def sampler_dtype_of(cfg) -> str:
    """sampler.dtype, where auto is the learner's precision (learner/models.py)."""
    from learner.engine import load_ds_file
    from learner.models import learner_precision, sampler_dtype

    lc = cfg.learner
    ds = load_ds_file(lc.deepspeed_config) if lc.deepspeed_config else None
    return sampler_dtype(cfg.sampler.dtype,
                         learner_precision(lc.precision, lc.gpus_per_rank > 0, ds))


def new_sampler(cfg, model_path: str, index: int):
    import ray

    device = "cuda" if cfg.sampler.gpus_per_actor else "cpu"
    return ray.remote(SamplerActor).options(**sampler_options(cfg, index)).remote(
        model_path, index, cfg.seed, device, sampler_dtype_of(cfg))


def collective_backend(cfg) -> str:
    return "nccl" if cfg.learner.gpus_per_rank and cfg.sampler.gpus_per_actor else "gloo"


def connect_collective(learner, samplers: list, backend: str = "gloo",
                       timeout_s: float = 600.0) -> None:
    """(Re)form the weight-broadcast group: learner rank 0 is rank 0, samplers[i] rank i + 1.
    The group's size is fixed when it is formed, so call this again after replacing a
    sampler; the rendezvous port is picked on rank 0's node."""
    import ray

    addr, port = ray.get(learner.actors[0].address.remote(), timeout=timeout_s)
    world = len(samplers) + 1
    joins = [learner.actors[0].join_collective.remote(backend, addr, port, world)]
    joins += [s.join_collective.remote(backend, addr, port, world, i + 1)
              for i, s in enumerate(samplers)]
    ray.get(joins, timeout=timeout_s)


def build_topology(cfg, model_path: str, engine_settings, controller=None) -> Topology:
    """`controller`: the running job's controller handle, when rebuilding after a failure.
    Pass the original handle on: a named actor dies with the handle that created it, and a
    handle looked up by name does not keep it alive."""
    import ray

    from cluster.controller import get_or_create_controller
    from cluster.learner_group import LearnerGroup
    from cluster.executor_pool import RayExecutorPool

    store = ray.remote(WeightStore).options(name=WEIGHT_STORE_NAME, num_cpus=0).remote()
    buffer = ray.remote(ReplayBuffer).options(name="rltf-buffer", num_cpus=0,
                                              max_concurrency=4).remote(
        cfg.buffer.capacity, cfg.buffer.max_staleness, cfg.buffer.mode, cfg.seed)
    samplers = [new_sampler(cfg, model_path, i) for i in range(cfg.sampler.actors)]
    pool = RayExecutorPool(cfg.executor)
    learner = LearnerGroup(engine_settings, world_size=cfg.learner.ranks,
                           gpus_per_rank=cfg.learner.gpus_per_rank,
                           cpus_per_rank=cfg.learner.cpus_per_rank)
    ray.get([s.version.remote() for s in samplers])
    if cfg.weights.transport == "collective":
        connect_collective(learner, samplers, collective_backend(cfg))
    if controller is None:
        controller = get_or_create_controller()  # rltf-driver: `rltf scale` and status
    return Topology(samplers, pool, buffer, store, learner, controller)
