"""Builds the actor topology of a training run from the config, each pool sized and placed on
its own resources:

* samplers: `rltf-sampler-<i>` (a GPU each on a cluster; CPUs here),
* executor pool: `rltf-executor-<i>` (CPU only, optional custom resource),
* replay buffer: `rltf-buffer`, weight store: `rltf-weights`,
* learner group: `rltf-learner-rank<i>` in one placement group.

Before any actor starts, the run's demands are checked against the cluster and its autoscaler
(`cluster/startup.py`); every wait during start-up is logged and bounded by
`cluster.placement_timeout_s`. The bookkeeping actors (buffer, weight store, controller)
reserve no CPU, and Ray restarts them when their process dies: the buffer comes back empty
(the driver logs what was lost and sets its policy version again), the weight store empty
(the driver gives it the same version again), the controller empty (the driver reports to it
every second).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from actors.replay_buffer import ReplayBuffer
from cluster.weights import WEIGHT_STORE_NAME, WeightStore

BUFFER_NAME = "rltf-buffer"
# Ray restarts these when their process dies, and retries the calls that were running.
RESTARTABLE = {"num_cpus": 0, "max_restarts": -1, "max_task_retries": -1}


def missing_paths(paths: list[str]) -> list[str]:
    """The paths, of those given, that do not exist on this node."""
    return [p for p in paths if not os.path.exists(p)]


def not_shared(path: str) -> str:
    import ray

    return (f"{path} is not visible on node {ray.util.get_node_ip_address()}: put the run "
            "folder (--run-dir) and the model (model.path, model.cache_dir) on storage that "
            "every node sees")


class Restartable:
    """For an actor that Ray restarts when its process dies: it comes back empty, and
    `restarted()` says so once."""

    def __init__(self, *args, **kwargs):
        import warnings

        import ray

        super().__init__(*args, **kwargs)
        with warnings.catch_warnings():  # Ray's own use of a deprecated property inside it
            warnings.simplefilter("ignore")
            self._restarted = ray.get_runtime_context().was_current_actor_reconstructed

    def restarted(self) -> bool:
        was, self._restarted = self._restarted, False
        return was


class BufferActor(Restartable, ReplayBuffer):
    """The replay buffer as the actor `rltf-buffer`."""

    def draw_shares(self, batch_size: int, parts: int) -> list:
        """`draw`, each share put in the object store by this actor: the references (none
        when no whole batch is held). A learner rank given a reference fetches its share
        from here; the driver, which passes the references on, never holds the data (a
        share returned as a value would be, when small enough for Ray to send it inline
        through the caller)."""
        import ray

        shares = self.draw(batch_size, parts)
        return [ray.put(share) for share in shares] if shares[0] else []


class StoreActor(Restartable, WeightStore):
    """The weight store as the actor `rltf-weights`."""


class SamplerActor:
    """What each sampler actor runs: a Sampler that keeps itself on the latest weights."""

    def __init__(self, model_path: str, index: int, seed: int, device: str = "cpu",
                 dtype: str = "float32", must_see: tuple[str, ...] = ()):
        import torch

        from actors.sampler import Sampler

        missing = missing_paths(list(must_see))
        if missing:
            raise FileNotFoundError(not_shared(missing[0]))
        if device == "cpu":
            torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
        self.sampler = Sampler(model_path, device=device, dtype=dtype,
                               seed=seed + 7919 * index)
        self.index = index
        self.collective = None
        self.sync_s = 0.0
        self._problem_set: tuple[str, list] = ("", [])  # the training problems' references

    def _sync_from_store(self) -> None:
        import ray

        try:
            store = ray.get_actor(WEIGHT_STORE_NAME)
            version = ray.get(store.latest_version.remote())
            if version > self.sampler.policy_version:
                version, refs = ray.get(store.latest.remote())
        except (ValueError, ray.exceptions.RayActorError):  # the store is being restarted
            return
        if version > self.sampler.policy_version:
            t0 = time.perf_counter()
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

    def generate_parcels(self, problem_set: list, draw: Any, seed: int, settings: Any,
                         parts: int) -> list:
        """`generate` for training, with what the driver sends and receives independent of
        the call's size: `draw` (an `actors.samples.ProblemDraw`) says which of the training
        problems to take (`problem_set[0]`: the reference of the list of their references,
        put once by the driver; `seed`: the run's, which orders them); the samples go into
        the object store in at most `parts` parcels of whole groups, put there by this actor
        (which owns them: if it dies, they are lost and the executor that was to judge them
        says so), and the driver gets only a small `Parcel` for each."""
        import ray

        from actors.samples import make_parcels

        if self.collective is None:
            self._sync_from_store()
        key = problem_set[0].hex()
        if self._problem_set[0] != key:
            self._problem_set = (key, ray.get(problem_set[0]))
        refs = self._problem_set[1]
        chosen = [refs[i] for i in draw.indices(len(refs), seed)]
        problems = ray.get(chosen)
        samples = self.sampler.generate(problems, settings)
        return make_parcels(samples, {p.task_id: r for p, r in zip(problems, chosen)}, parts,
                            ray.put)

    def version(self) -> int:
        return self.sampler.policy_version

    def fetch_weights(self) -> int:
        """Take the weight store's newer version now (a restore's), broadcast group or not."""
        self._sync_from_store()
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
    learner_pings: Any = None  # calls in flight that show a dead rank (recovery.check_learner)

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
    opts = {"name": f"rltf-sampler-{index}", "num_cpus": s.cpus_per_actor,
            "num_gpus": s.gpus_per_actor, "max_restarts": 0,
            "runtime_env": {"env_vars": {"OMP_NUM_THREADS": str(max(1, int(s.cpus_per_actor)))}}}
    if s.memory_gb:
        opts["memory"] = int(s.memory_gb * 1024 ** 3)
    if s.resources:
        opts["resources"] = dict(s.resources)
    return opts


def sampler_dtype_of(cfg) -> str:
    """sampler.dtype, where auto is the learner's precision (learner/models.py)."""
    from learner.engine import load_ds_file
    from learner.models import learner_precision, sampler_dtype

    lc = cfg.learner
    ds = load_ds_file(lc.deepspeed_config) if lc.deepspeed_config else None
    return sampler_dtype(cfg.sampler.dtype,
                         learner_precision(lc.precision, lc.gpus_per_rank > 0, ds))


def new_sampler(cfg, model_path: str, index: int):
    """Sampler `index`; a replacement takes the dead one's name once Ray has let it go
    (`rltf-sampler-<i>.<n>` if that takes longer)."""
    import ray

    from cluster.startup import create_named

    device = "cuda" if cfg.sampler.gpus_per_actor else "cpu"
    opts = sampler_options(cfg, index)
    must_see = (model_path,) if os.path.exists(model_path) else ()
    return create_named(ray.remote(SamplerActor), opts.pop("name"),
                        (model_path, index, cfg.seed, device, sampler_dtype_of(cfg), must_see),
                        **opts)


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


def build_topology(cfg, model_path: str, engine_settings, controller=None, run_dir=None,
                   log=print) -> Topology:
    """`controller`: the running job's controller handle, when rebuilding after a failure.
    Pass the original handle on: a named actor dies with the handle that created it, and a
    handle looked up by name does not keep it alive. `run_dir`: checked to be visible where
    the learner ranks write checkpoints."""
    import ray

    from cluster.controller import get_or_create_controller, refuse_second_job
    from cluster.learner_group import LearnerGroup
    from cluster.startup import (check_resources, create_named, release_request,
                                 wait_for_resources, wait_ready)
    from cluster.executor_pool import RayExecutorPool

    timeout = cfg.cluster.placement_timeout_s
    if controller is None:
        refuse_second_job(cfg.cluster.namespace)
    asked = wait_for_resources(check_resources(cfg), timeout, log)
    made: list = []  # actor handles, and the pool and learner group (which stop their own)
    try:
        store = create_named(ray.remote(StoreActor), WEIGHT_STORE_NAME, **RESTARTABLE)
        made.append(store)
        buffer = create_named(ray.remote(BufferActor), BUFFER_NAME, (cfg.buffer, cfg.seed),
                              max_concurrency=4, **RESTARTABLE)
        made.append(buffer)
        samplers = [new_sampler(cfg, model_path, i) for i in range(cfg.sampler.actors)]
        made += samplers
        pool = RayExecutorPool(cfg.executor)
        made.append(pool)
        lc = cfg.learner
        learner = LearnerGroup(engine_settings, world_size=lc.ranks,
                               gpus_per_rank=lc.gpus_per_rank, cpus_per_rank=lc.cpus_per_rank,
                               memory_gb=lc.memory_gb, resources=lc.resources,
                               timeout_s=timeout, log=log)
        made.append(learner)
        wait_ready([s.version.remote() for s in samplers], "sampler actors", timeout, log)
        if run_dir is not None:
            learner.check_paths([str(run_dir)])
        if cfg.weights.transport == "collective":
            connect_collective(learner, samplers, collective_backend(cfg))
    except BaseException:  # nothing half-built stays behind
        for a in made:
            try:
                if isinstance(a, RayExecutorPool):
                    a.close()
                elif isinstance(a, LearnerGroup):
                    a.shutdown()
                else:
                    ray.kill(a)
            except Exception:
                pass
        raise
    finally:
        if asked:
            release_request()
    if controller is None:
        controller = get_or_create_controller()  # rltf-driver: `rltf scale` and status
    return Topology(samplers, pool, buffer, store, learner, controller)

