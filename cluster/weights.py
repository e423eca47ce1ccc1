"""Weight broadcast from learner rank 0 to the samplers: two transports.

* `object_store` (default on CPU): rank 0 puts the full state dict into the Ray object store
  once (`put_state`: as numpy arrays, which Ray keeps out of band, so each reader maps them
  from shared memory instead of unpickling a copy); every sampler fetches the same object. A
  named `WeightStore` actor (`rltf-weights`) remembers the latest version, so a late or
  restarted sampler fetches it too.
* `collective`: a `torch.distributed` process group of learner rank 0 and the samplers (nccl on
  GPU, gloo on CPU), made with its own TCP store so it lives beside DeepSpeed's default group.
  Rank 0 broadcasts a small header (names, shapes, dtypes) and then the tensors in flat
  buckets of at most `bucket_mb`, one collective per bucket.

Both deliver bitwise-identical tensors; the receiver copies them into its model in place.
"""

from __future__ import annotations

import datetime
import pickle
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from cluster.faults import pause_point

WEIGHT_STORE_NAME = "rltf-weights"


class WeightStore:
    """Latest published weights: (version, [ObjectRef]). The ref is kept inside a list so that
    Ray passes the reference itself rather than the (large) value it points to."""

    def __init__(self) -> None:
        self.version = -1
        self.refs: list | None = None

    def publish(self, version: int, refs: list) -> int:
        pause_point("store-publish")  # fault tests: killed while it takes a version
        if version < self.version:
            raise ValueError(f"version {version} is older than the published {self.version}")
        self.version, self.refs = version, refs
        return version

    def latest(self) -> tuple[int, list | None]:
        return self.version, self.refs

    def latest_version(self) -> int:
        return self.version


_SAME_WIDTH_INT = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


class PackedState(Mapping):
    """A state dict as numpy arrays (bfloat16 and other types numpy lacks as integers of the
    same width), so that Ray stores the bytes out of band and `ray.get` maps them from shared
    memory without a copy. Reading an entry gives a tensor that VIEWS that read-only memory:
    copy it before changing it (`Sampler.load_weights` and `load_state_dict` copy). A tensor
    that several names share (tied weights) is stored once."""

    def __init__(self, state: Mapping[str, torch.Tensor]):
        self._dtypes: dict[str, torch.dtype] = {}
        self._arrays: dict[str, Any] = {}
        seen: dict[str, Any] = {}
        aliases = shared_names(state)
        for k, v in state.items():
            t = v.detach().cpu().contiguous()
            self._dtypes[k] = t.dtype
            if k in aliases:
                self._arrays[k] = seen[aliases[k]]
                continue
            try:
                arr = t.numpy()
            except TypeError:  # bfloat16, float8...
                arr = t.view(_SAME_WIDTH_INT[t.element_size()]).numpy()
            self._arrays[k] = seen[k] = arr

    def __getitem__(self, name: str) -> torch.Tensor:
        import warnings

        arr, dtype = self._arrays[name], self._dtypes[name]
        with warnings.catch_warnings():  # "the given NumPy array is not writable"
            warnings.simplefilter("ignore", UserWarning)
            t = torch.from_numpy(arr)
        return t if t.dtype == dtype else t.view(dtype)

    def __contains__(self, name: object) -> bool:
        return name in self._arrays

    def __iter__(self):
        return iter(self._arrays)

    def __len__(self) -> int:
        return len(self._arrays)


def put_state(state: Mapping[str, torch.Tensor]) -> list:
    """[ObjectRef] of the state (a `PackedState`), as the WeightStore keeps it."""
    import ray

    return [ray.put(PackedState(state))]


def cpu_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached, contiguous CPU copies (what crosses process boundaries)."""
    return {k: v.detach().to("cpu").contiguous() for k, v in state.items()}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype


def plan_buckets(specs: list[TensorSpec], bucket_bytes: int) -> list[list[int]]:
    """Consecutive tensors of one dtype grouped into buckets of at most `bucket_bytes` (a
    tensor larger than that gets a bucket of its own)."""
    buckets: list[list[int]] = []
    cur: list[int] = []
    cur_bytes = 0
    cur_dtype = None
    for i, s in enumerate(specs):
        nbytes = int(torch.Size(s.shape).numel()) * torch.empty((), dtype=s.dtype).element_size()
        if cur and (s.dtype != cur_dtype or cur_bytes + nbytes > bucket_bytes):
            buckets.append(cur)
            cur, cur_bytes = [], 0
        cur.append(i)
        cur_bytes += nbytes
        cur_dtype = s.dtype
    if cur:
        buckets.append(cur)
    return buckets


class CollectiveGroup:
    """A process group of its own: rank 0 is the learner's rank 0, ranks 1..N the samplers."""

    def __init__(self, backend: str, master_addr: str, master_port: int, world_size: int,
                 rank: int, timeout_s: float = 600.0):
        import torch.distributed as dist

        self.rank, self.world_size, self.backend = rank, world_size, backend
        timeout = datetime.timedelta(seconds=timeout_s)
        self._store = dist.TCPStore(master_addr, master_port, world_size, rank == 0,
                                    timeout=timeout)
        if backend == "gloo":
            self._pg = dist.ProcessGroupGloo(self._store, rank, world_size, timeout)
        elif backend == "nccl":
            opts = dist.ProcessGroupNCCL.Options()
            opts._timeout = timeout
            self._pg = dist.ProcessGroupNCCL(self._store, rank, world_size, opts)
        else:
            raise ValueError(f"unknown backend {backend!r}; use gloo (CPU) or nccl (GPU)")
        self.device = torch.device("cuda", torch.cuda.current_device()) \
            if backend == "nccl" else torch.device("cpu")

    def _bcast(self, t: torch.Tensor) -> None:
        import torch.distributed as dist

        opts = dist.BroadcastOptions()
        opts.rootRank = 0
        self._pg.broadcast([t], opts).wait()

    def _bcast_bytes(self, payload: bytes | None) -> bytes:
        n = torch.tensor([len(payload) if payload is not None else 0], dtype=torch.int64,
                         device=self.device)
        self._bcast(n)
        buf = torch.empty(int(n.item()), dtype=torch.uint8, device=self.device)
        if self.rank == 0:
            buf.copy_(torch.frombuffer(bytearray(payload), dtype=torch.uint8))
        self._bcast(buf)
        return bytes(buf.cpu().numpy().tobytes())

    def broadcast_state(self, state: dict[str, torch.Tensor] | None, version: int = 0,
                        bucket_mb: float = 64.0) -> tuple[int, dict[str, torch.Tensor]]:
        """Rank 0 passes `state`; every rank returns (version, the same tensors on CPU). A
        tensor that several names share (tied weights) is sent once; receivers get one tensor
        under all its names."""
        if self.rank == 0:
            assert state is not None
            names, aliases = list(state), shared_names(state)
            specs = [TensorSpec(k, tuple(v.shape), v.dtype) for k, v in state.items()
                     if k not in aliases]
            header = pickle.dumps((version, [(s.name, s.shape, str(s.dtype)) for s in specs],
                                   names, aliases))
        else:
            header = None
        version, raw, names, aliases = pickle.loads(self._bcast_bytes(header))
        specs = [TensorSpec(n, tuple(sh), getattr(torch, dt.split(".")[-1])) for n, sh, dt in raw]
        out: dict[str, torch.Tensor] = {}
        for bucket in plan_buckets(specs, int(bucket_mb * (1 << 20))):
            dtype = specs[bucket[0]].dtype
            sizes = [int(torch.Size(specs[i].shape).numel()) for i in bucket]
            if self.rank == 0:
                flat = torch.cat([state[specs[i].name].detach().reshape(-1).to(self.device)
                                  for i in bucket])
            else:
                flat = torch.empty(sum(sizes), dtype=dtype, device=self.device)
            self._bcast(flat)
            flat = flat.cpu()
            for i, piece in zip(bucket, torch.split(flat, sizes)):
                # receivers: views of this bucket's own buffer (a new one per bucket)
                out[specs[i].name] = piece.view(specs[i].shape) if self.rank else \
                    state[specs[i].name].detach().cpu()
        return version, {n: out[aliases.get(n, n)] for n in names}


def shared_names(state: Mapping[str, torch.Tensor]) -> dict[str, str]:
    """name -> the first name of the same tensor (same storage, offset, shape, strides)."""
    first: dict[tuple, str] = {}
    out = {}
    for k, v in state.items():
        if v.numel() == 0:
            continue
        key = (v.device, v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape),
               v.stride(), v.dtype)
        if key in first:
            out[k] = first[key]
        else:
            first[key] = k
    return out


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def state_bytes(state: dict[str, Any]) -> int:
    return sum(v.numel() * v.element_size() for v in state.values() if torch.is_tensor(v))


def publish(trainer, topo) -> float:
    """The learner's current weights to every sampler as the next policy version (or,
    after a restore, as the version they already were); returns seconds spent."""
    import ray

    t0 = time.perf_counter()
    trainer.versions.publish(trainer.step)
    if trainer.cfg.weights.transport == "object_store":
        # Every rank takes part (ZeRO-3 gathers); rank 0 returns the full state. The
        # returned object is owned by this driver, not by the rank, so it outlives a
        # learner rank that dies later. Each rank also answers a small "done": a rank
        # that died mid-gather raises here instead of leaving the store a lost version.
        pairs = [a.full_state_and_done.options(num_returns=2).remote()
                 for a in topo.learner.actors]
        ray.get([done for _, done in pairs])
        refs = [pairs[0][0]]
        ray.get(topo.store.publish.remote(trainer.version, refs))
        trainer.versions.hold(refs)
    else:
        bucket = trainer.cfg.weights.bucket_mb
        sends = [a.broadcast_weights.remote(trainer.version, bucket) for a in topo.learner.actors]
        recvs = [s.receive_broadcast.remote(bucket) for s in topo.samplers]
        ray.get(sends + recvs)
        # rank 0 gave the store this version too: keep its reference (for `resend`)
        version, refs = ray.get(topo.store.latest.remote())
        if version == trainer.version:
            trainer.versions.hold(refs)
    ray.get(topo.buffer.set_policy_version.remote(trainer.version))
    return time.perf_counter() - t0
