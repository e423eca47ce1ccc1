"""LearnerGroup: W DeepSpeed ranks, each a Ray actor (`rltf-learner-rank<i>`) on its own GPU
(or CPUs here), bootstrapped the way DeepSpeed expects.

Rank 0's node address and a free port become MASTER_ADDR / MASTER_PORT; each actor gets
RANK, WORLD_SIZE and LOCAL_RANK (its index among the ranks on its node) before it builds its
engine; nccl on GPU, gloo on CPU. The ranks sit in one placement group (one bundle per rank,
PACK strategy), so the group is sized and placed independently of samplers and executors.
A global batch is split evenly across ranks and, on each rank, into `grad_accum` micro-batches.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Callable

from cluster.faults import pause_point
from learner.engine import EngineSettings, PolicyEngine, StepMetrics


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


class LearnerRank:
    """What each learner actor runs; the objective arrives with each step (picklable).

    In training each rank takes its own share of a batch straight from the replay buffer
    (`fetch_share`: the driver passes the share's object reference; then `train_held`, see
    `ShareStep`) and collates it itself with what `setup_batches` gave it once at start-up:
    the batch settings, the training problems that have reference solutions (the supervised
    term) and a seed."""

    def __init__(self, settings: EngineSettings, rank: int, world_size: int):
        self.settings, self.rank, self.world_size = settings, rank, world_size
        self.engine: PolicyEngine | None = None
        self.collective = None
        self.batches = None  # learner.step_batches.StepBatches, from setup_batches
        self._sl_rng = None  # the supervised draws' RNG state, from a checkpoint
        self._held: list | None = None  # this rank's share of the batch, between two phases

    # bootstrap ---------------------------------------------------------------------------
    def address(self) -> tuple[str, int]:
        import ray

        return ray.util.get_node_ip_address(), _free_port()

    def node_id(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()

    def missing(self, paths: list[str]) -> list[str]:
        """For each of `paths` this node does not see, why (the run needs shared storage)."""
        from cluster.topology import missing_paths, not_shared

        return [not_shared(p) for p in missing_paths(paths)]

    def start(self, master_addr: str, master_port: int, local_rank: int) -> int:
        os.environ.update(MASTER_ADDR=master_addr, MASTER_PORT=str(master_port),
                          RANK=str(self.rank), WORLD_SIZE=str(self.world_size),
                          LOCAL_RANK=str(local_rank))
        self.engine = PolicyEngine(self.settings, self.rank, self.world_size, local_rank)
        return os.getpid()

    # training ----------------------------------------------------------------------------
    def setup_batches(self, settings, problems: list, seed: int) -> bool:
        """What this rank needs to collate its own batches: the batch settings
        (`learner.step_batches.BatchSettings`), the training problems with reference
        solutions, and a seed (each rank draws its supervised rows with seed + rank)."""
        from learner.models import is_encoder_decoder, load_config, load_tokenizer
        from learner.step_batches import StepBatches

        path = self.settings.model_path
        tokenizer = load_tokenizer(path)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.batches = StepBatches(settings, tokenizer, is_encoder_decoder(load_config(path)),
                                   problems, seed=seed + self.rank)
        if self._sl_rng is not None:  # restored before the set-up: continue its draws
            self.batches.set_rng_state(self._sl_rng)
        return True

    def fetch_share(self, held: list) -> int:
        """Phase one of a step (`ShareStep`): fetch this rank's share of a batch (`held[0]`,
        a reference the replay buffer actor put; inside a list so that a lost one is this
        call's to report) and hold it. Its number of experiences, or 0 when it was lost with
        the buffer's process (a share is never empty)."""
        import ray
        from ray.exceptions import ObjectLostError

        self._held = None
        pause_point("learner-fetch")  # fault tests: the buffer dies before this rank fetches
        try:
            share = ray.get(held[0])
        except ObjectLostError:  # OwnerDiedError: the buffer that put it died
            return 0
        self._held = share
        return len(share)

    def train_held(self, objective: Callable) -> StepMetrics:
        """Phase two: one optimizer step on the share `fetch_share` holds (started only when
        every rank holds its share of the batch, so all ranks step together)."""
        share, self._held = self._held, None
        if share is None:
            raise RuntimeError(f"learner rank {self.rank} holds no share to train on: "
                               "fetch_share first")
        return self.engine.train_step(self.batches.micro_batches(share), objective)

    def drop_held(self) -> None:
        """Forget the held share: another rank's was lost, so this batch trains no rank."""
        self._held = None

    def train_step(self, micro_batches: list[Any], objective: Callable) -> StepMetrics:
        return self.engine.train_step(micro_batches, objective)

    def step_count(self) -> int:
        return self.engine.step

    # weights -------------------------------------------------------------------------------
    def full_state_ref(self) -> list | None:
        """Gather the full weights (a collective); rank 0 returns [ObjectRef] to them (a
        `cluster.weights.PackedState`: a read-only mapping of name -> tensor)."""
        from cluster.weights import put_state

        state = self.engine.full_state_dict()
        return put_state(state) if state is not None else None

    def full_state(self):
        """Gather the full weights (a collective); rank 0 returns them as a
        `cluster.weights.PackedState` (a read-only mapping of name -> tensor that the object
        store hands to every reader without a copy), other ranks None."""
        from cluster.weights import PackedState

        pause_point("learner-publish")  # fault tests: killed while a publish is in flight
        state = self.engine.full_state_dict()
        return PackedState(state) if state is not None else None

    def full_state_and_done(self) -> tuple[Any, bool]:
        """full_state() and True, returned as two objects (`num_returns=2`): the caller waits
        on the small one, where a failure shows, and leaves the weights in the object store."""
        return self.full_state(), True

    def join_collective(self, backend: str, addr: str, port: int, world_size: int) -> bool:
        from cluster.weights import CollectiveGroup

        self.collective = CollectiveGroup(backend, addr, port, world_size, 0)
        return True

    def broadcast_weights(self, version: int, bucket_mb: float = 64.0,
                          to_store: bool = True) -> int:
        """Rank 0 sends the gathered weights over the collective group (every rank gathers),
        then (`to_store`) also publishes them to the WeightStore, if there is one, so that a
        sampler started later (a replacement, outside the group) still fetches this version."""
        pause_point("learner-publish")
        state = self.engine.full_state_dict()
        if self.rank == 0:
            if self.collective is None:
                raise RuntimeError("learner rank 0 has not joined a collective group; call "
                                   "cluster.topology.connect_collective first")
            self.collective.broadcast_state(state, version, bucket_mb)
            if to_store:
                import ray

                from cluster.weights import WEIGHT_STORE_NAME, put_state

                try:
                    store = ray.get_actor(WEIGHT_STORE_NAME)
                except ValueError:
                    store = None
                if store is not None:
                    ray.get(store.publish.remote(version, put_state(state)))
        return version

    # checkpoints -----------------------------------------------------------------------------
    def save_checkpoint(self, folder: str, client_state: dict | None = None) -> None:
        tokenizer = None
        if self.rank == 0:
            try:
                from learner.models import load_tokenizer

                tokenizer = load_tokenizer(self.settings.model_path)
            except (OSError, ValueError):  # ModelNotAvailable is an OSError
                tokenizer = None
        self.engine.save_checkpoint(folder, tokenizer=tokenizer, client_state=client_state)
        if self.batches is not None:  # each rank's own draws of supervised rows
            import json

            (Path(folder) / f"sl_rng_rank{self.rank}.json").write_text(
                json.dumps(self.batches.rng_state()))
        pause_point("learner-checkpoint")  # fault tests: killed with its part written

    def load_checkpoint(self, folder: str) -> dict:
        import json

        pause_point("learner-restore")  # fault tests: killed while a restart restores
        state = self.engine.load_checkpoint(folder)
        mine = Path(folder) / f"sl_rng_rank{self.rank}.json"
        self._sl_rng = json.loads(mine.read_text()) if mine.exists() else None
        if self.batches is not None and self._sl_rng is not None:
            self.batches.set_rng_state(self._sl_rng)
        return state


class ShareStep:
    """One learner step on the shares of a batch, in two phases, polled without blocking.

    The replay buffer actor put the shares, so they are lost if its process dies: were each
    rank to fetch its share and step at once, one rank could step (and wait forever in
    DeepSpeed's all-reduce, or part its weights from the others') while another found its
    share lost. So each rank first fetches and holds its share (`LearnerRank.fetch_share`,
    answering its size, 0 when lost); only when every rank holds one do they all step on it
    (`train_held`); otherwise each rank drops what it holds and the batch trains nothing
    (`lost`). The caller holds references and small answers only, never the experiences."""

    def __init__(self, actors: list, shares: list, objective: Callable):
        self.actors, self.objective = list(actors), objective
        self.refs = [a.fetch_share.remote([share]) for a, share in zip(self.actors, shares)]
        self.sizes: list[int] | None = None  # each rank's share, once every rank answered
        self.metrics: list[StepMetrics] | None = None  # once every rank has stepped

    @property
    def lost(self) -> bool:
        return self.sizes is not None and not all(self.sizes)

    def poll(self) -> bool:
        """Move on without waiting: True once finished (`metrics`, or `lost`). A dead rank
        raises here (RayActorError) as soon as its call has failed."""
        import ray

        done = ray.wait(self.refs, num_returns=len(self.refs), timeout=0)[0]
        for ref in done:  # small answers: sizes, then metrics
            ray.get(ref)
        if len(done) < len(self.refs):
            return False
        answers = ray.get(self.refs)  # in rank order
        if self.sizes is None:
            self.sizes = answers
            if self.lost:
                for a in self.actors:
                    a.drop_held.remote()
                return True
            self.refs = [a.train_held.remote(self.objective) for a in self.actors]
            return False
        self.metrics = answers
        return True

    def result(self) -> list[StepMetrics] | None:
        """Wait for the step: the ranks' metrics, or None when a share was lost."""
        import ray

        while not self.poll():  # polled each second: a failed rank raises while others wait
            ray.wait(self.refs, num_returns=len(self.refs), timeout=1.0)
        return self.metrics


class LearnerGroup:
    """Creates and drives the W learner actors. Every wait while they start is logged every
    30 s and bounded by `timeout_s`; a rank that dies before its predecessor's name is free
    gets `rltf-learner-rank<i>.<n>`."""

    def __init__(self, settings: EngineSettings, world_size: int = 1, gpus_per_rank: float = 0,
                 cpus_per_rank: float = 1, name_prefix: str = "rltf-learner",
                 placement_strategy: str = "PACK", timeout_s: float = 600,
                 memory_gb: float = 0.0, resources: dict[str, float] | None = None,
                 log: Callable[[str], Any] = print):
        import ray
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        from cluster.startup import create_named, wait_ready

        if world_size < 1:
            raise ValueError(f"world_size must be at least 1 (got {world_size})")
        self.settings, self.world_size = settings, world_size
        self.timeout_s, self.log = timeout_s, log
        memory = int(memory_gb * 1024 ** 3)
        bundle = {"CPU": cpus_per_rank, **({"GPU": gpus_per_rank} if gpus_per_rank else {}),
                  **({"memory": memory} if memory else {}), **(resources or {})}
        self.pg = placement_group([dict(bundle) for _ in range(world_size)],
                                  strategy=placement_strategy, name=f"{name_prefix}-pg")
        self.actors = []
        try:
            wait_ready([self.pg.ready()], f"learner placement group ({world_size} x {bundle})",
                       timeout_s, log)
            cls = ray.remote(LearnerRank)
            for rank in range(world_size):
                strategy = PlacementGroupSchedulingStrategy(placement_group=self.pg,
                                                            placement_group_bundle_index=rank)
                extra = {"memory": memory} if memory else {}
                if resources:
                    extra["resources"] = dict(resources)
                self.actors.append(create_named(
                    cls, f"{name_prefix}-rank{rank}", (settings, rank, world_size),
                    num_cpus=cpus_per_rank, num_gpus=gpus_per_rank,
                    scheduling_strategy=strategy, max_restarts=0, **extra))
            must_see = [settings.model_path] if os.path.exists(settings.model_path) else []
            self.check_paths(must_see)
            addr, port = ray.get(self.actors[0].address.remote())
            nodes = ray.get([a.node_id.remote() for a in self.actors])
            if len(set(nodes)) == 1:
                addr = "127.0.0.1"  # one node: rendezvous over loopback
            local_ranks = [nodes[:i].count(n) for i, n in enumerate(nodes)]
            wait_ready([a.start.remote(addr, port, lr) for a, lr in zip(self.actors, local_ranks)],
                       "learner ranks", timeout_s, log)
        except BaseException:
            self.shutdown()
            raise

    def check_paths(self, paths: list[str]) -> None:
        """StartupError unless every rank's node sees `paths` (shared storage)."""
        from cluster.startup import StartupError, wait_ready

        for missing in wait_ready([a.missing.remote(paths) for a in self.actors],
                                  "learner ranks", self.timeout_s, self.log):
            if missing:
                raise StartupError(missing[0])

    def train_step(self, micro_batches_per_rank: list[list[Any]],
                   objective: Callable) -> list[StepMetrics]:
        import ray

        if len(micro_batches_per_rank) != self.world_size:
            raise ValueError(f"need one shard per rank ({self.world_size}), "
                             f"got {len(micro_batches_per_rank)}")
        return ray.get([a.train_step.remote(mb, objective)
                        for a, mb in zip(self.actors, micro_batches_per_rank)])

    def full_state_ref(self):
        """[ObjectRef] of the full weights, put by rank 0 (all ranks join the gather)."""
        import ray

        out = ray.get([a.full_state_ref.remote() for a in self.actors])
        return out[0]

    def save_checkpoint(self, folder: str, client_state: dict | None = None) -> None:
        import ray

        ray.get([a.save_checkpoint.remote(folder, client_state) for a in self.actors])

    def load_checkpoint(self, folder: str) -> list[dict]:
        import ray

        return ray.get([a.load_checkpoint.remote(folder) for a in self.actors])

    def shutdown(self) -> None:
        import ray
        from ray.util.placement_group import remove_placement_group

        for a in self.actors:
            try:
                ray.kill(a)
            except Exception:
                pass
        try:
            remove_placement_group(self.pg)
        except Exception:
            pass
