"""Weight broadcast from learner rank 0 to the samplers: two transports.

* `object_store` (default on CPU): rank 0 puts the full state dict into the Ray object store
  once; every sampler fetches the same object. A named `WeightStore` actor (`rltf-weights`)
  remembers the latest version, so a late or restarted sampler fetches it too.
* `collective`: a `torch.distributed` process group of learner rank 0 and the samplers (nccl on
  GPU, gloo on CPU), made with its own TCP store so it lives beside DeepSpeed's default group.
  Rank 0 broadcasts a small header (names, shapes, dtypes) and then the tensors in flat
  buckets of at most `bucket_mb`, one collective per bucket.

Both deliver bitwise-identical tensors; the receiver copies them into its model in place.
"""

from __future__ import annotations

import datetime
import pickle
from dataclasses import dataclass
from typing import Any

import torch

WEIGHT_STORE_NAME = "rltf-weights"


class WeightStore:
    """Latest published weights: (version, [ObjectRef]). The ref is kept inside a list so that
    Ray passes the reference itself rather than the (large) value it points to."""

    def __init__(self) -> None:
        self.version = -1
        self.refs: list | None = None

    def publish(self, version: int, refs: list) -> int:
        if version < self.version:
            raise ValueError(f"version {version} is older than the published {self.version}")
        self.version, self.refs = version, refs
        return version

    def latest(self) -> tuple[int, list | None]:
        return self.version, self.refs

    def latest_version(self) -> int:
        return self.version


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
        """Rank 0 passes `state`; every rank returns (version, the same tensors on CPU)."""
        if self.rank == 0:
            assert state is not None
            specs = [TensorSpec(k, tuple(v.shape), v.dtype) for k, v in state.items()]
            header = pickle.dumps((version, [(s.name, s.shape, str(s.dtype)) for s in specs]))
        else:
            header = None
        version, raw = pickle.loads(self._bcast_bytes(header))
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
                out[specs[i].name] = piece.view(specs[i].shape).clone() if self.rank else \
                    state[specs[i].name].detach().cpu()
        return version, out


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def state_bytes(state: dict[str, Any]) -> int:
    return sum(v.numel() * v.element_size() for v in state.values() if torch.is_tensor(v))
