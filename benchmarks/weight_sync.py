"""Weight sync: the time to deliver a GPT-2-style model's full state dict to N samplers.

A sender actor plays learner rank 0: it holds the state dict of a randomly initialised GPT-2
of about `--params-m` million parameters (config only, nothing downloaded), copied per key as
`PolicyEngine.full_state_dict` does. Receiver actors play samplers: each holds a model of the
same config and copies what it receives into it in place, as `Sampler.load_weights` does.

* object_store: the sender puts the state once (`cluster.weights.put_state`, as learner rank
  0 does) and publishes [ref] to a `WeightStore`; every receiver asks the store for the
  latest version, `ray.get`s the same object and loads it (`SamplerActor._sync_from_store`).
* collective: the sender and the receivers form a gloo group (`cluster.weights`, once per
  group size, not timed) and the sender broadcasts the state in buckets; each receiver loads
  it (`SamplerActor.receive_broadcast`).
* baseline: one plain `ray.put` by the sender and one `ray.get` by one receiver of the same
  state dict, as a dict of tensors (no store, no load into a model).

Each cell is the wall time from the driver's first call until every receiver has loaded the
weights; the median of `--repeats`. Target: at 4 samplers, each transport within 2x the
baseline.

    python benchmarks/weight_sync.py [--params-m 50] [--repeats 3] [--receivers 1,2,4]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

N_LAYER, N_HEAD, VOCAB, POSITIONS = 8, 8, 32768, 1024


def gpt2_config(params_m: float):
    """A GPT-2 config of about params_m million parameters: 8 layers, the width solved for."""
    from transformers import GPT2Config

    # params ~ 12 L d^2 + (V + P) d (the LM head is tied to the embedding)
    a, b, c = 12 * N_LAYER, VOCAB + POSITIONS, -params_m * 1e6
    d = (-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)
    d = max(64, int(round(d / 64)) * 64)
    return GPT2Config(n_layer=N_LAYER, n_head=N_HEAD, n_embd=d, vocab_size=VOCAB,
                      n_positions=POSITIONS, bos_token_id=0, eos_token_id=0)


def empty_model(config):
    """The model's tensors allocated, not initialised (the receivers overwrite them)."""
    import torch
    from transformers import GPT2LMHeadModel

    with torch.device("meta"):
        model = GPT2LMHeadModel(config)
    model = model.to_empty(device="cpu")
    model.tie_weights()
    return model.eval()


class Sender:
    """Learner rank 0: the full state dict, put in the object store or broadcast."""

    def __init__(self, config, seed: int = 0):
        import torch

        torch.manual_seed(seed)
        model = empty_model(config)
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0.0, 0.02)
        self.params = sum(p.numel() for p in model.parameters())
        # as PolicyEngine.full_state_dict: a CPU copy of every entry (so the tied LM head is
        # a second copy of the embedding)
        self.state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        self.group = None

    def info(self) -> tuple[int, int, int]:
        from cluster.weights import state_bytes

        return self.params, state_bytes(self.state), len(self.state)

    def address(self) -> tuple[str, int]:
        import ray

        from cluster.weights import free_port

        return ray.util.get_node_ip_address(), free_port()

    def put(self) -> list:
        import ray

        return [ray.put(self.state)]

    def publish(self, version: int) -> int:
        """As Trainer.publish with LearnerRank.full_state_ref: put_state, then the store."""
        import ray

        from cluster.weights import WEIGHT_STORE_NAME, put_state

        store = ray.get_actor(WEIGHT_STORE_NAME)
        return ray.get(store.publish.remote(version, put_state(self.state)))

    def join(self, addr: str, port: int, world: int) -> bool:
        from cluster.weights import CollectiveGroup

        self.group = CollectiveGroup("gloo", addr, port, world, 0)
        return True

    def broadcast(self, version: int, bucket_mb: float) -> int:
        self.group.broadcast_state(self.state, version, bucket_mb)
        return version


class Receiver:
    """A sampler: a model of the same config that takes new weights in place."""

    def __init__(self, config):
        import torch

        torch.set_num_threads(1)
        self.model = empty_model(config)
        self.version = -1
        self.group = None

    def ready(self) -> bool:
        return True

    def _load(self, state: dict, version: int) -> None:
        import torch

        own = self.model.state_dict()
        missing = [k for k in own if k not in state]
        if missing or any(own[k].shape != state[k].shape for k in own):
            raise ValueError(f"state dict does not match the model: missing {missing[:3]}")
        with torch.no_grad():
            for k, v in state.items():
                own[k].copy_(v)
        self.version = version

    def fetch(self, refs: list) -> int:
        """Baseline: ray.get of the object only."""
        import ray

        state = ray.get(refs[0])
        return sum(v.numel() * v.element_size() for v in state.values())

    def sync(self) -> int:
        """As SamplerActor._sync_from_store."""
        import ray

        from cluster.weights import WEIGHT_STORE_NAME

        store = ray.get_actor(WEIGHT_STORE_NAME)
        if ray.get(store.latest_version.remote()) > self.version:
            version, refs = ray.get(store.latest.remote())
            self._load(ray.get(refs[0]), version)
        return self.version

    def join(self, addr: str, port: int, world: int, rank: int) -> bool:
        from cluster.weights import CollectiveGroup

        self.group = CollectiveGroup("gloo", addr, port, world, rank)
        return True

    def receive(self, bucket_mb: float) -> int:
        version, state = self.group.broadcast_state(None, bucket_mb=bucket_mb)
        self._load(state, version)
        return version


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params-m", type=float, default=50.0, help="model size, millions")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per cell (median)")
    ap.add_argument("--receivers", default="1,2,4", help="receiver counts")
    ap.add_argument("--bucket-mb", type=float, default=64.0, help="collective bucket size")
    ap.add_argument("--num-cpus", type=int, default=4, help="logical CPUs of the Ray instance")
    args = ap.parse_args()
    counts = sorted({int(x) for x in args.receivers.split(",")})

    import ray

    from cluster.weights import WEIGHT_STORE_NAME, WeightStore

    ray.init(_node_ip_address="127.0.0.1", include_dashboard=False, num_cpus=args.num_cpus,
             namespace=f"rltf-bench-weights-{os.getpid()}", log_to_driver=False)
    try:
        config = gpt2_config(args.params_m)
        env = {"env_vars": {"OMP_NUM_THREADS": "1"}}
        store = ray.remote(WeightStore).options(name=WEIGHT_STORE_NAME, num_cpus=0).remote()
        sender = ray.remote(Sender).options(num_cpus=0, runtime_env=env).remote(config)
        receivers = [ray.remote(Receiver).options(num_cpus=0, runtime_env=env).remote(config)
                     for _ in range(max(counts))]
        params, nbytes, entries = ray.get(sender.info.remote())
        ray.get([r.ready.remote() for r in receivers] + [store.latest_version.remote()])
        print(f"model: GPT-2 n_layer={config.n_layer} n_embd={config.n_embd} "
              f"vocab={config.vocab_size}: {params / 1e6:.1f}M parameters; state dict "
              f"{entries} entries, {nbytes / 2**20:.0f} MiB; cpus: {os.cpu_count()}; "
              f"repeats: {args.repeats} (median)")

        def timed(fn) -> float:
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            return statistics.median(times)

        def baseline() -> None:
            refs = ray.get(sender.put.remote())
            assert ray.get(receivers[0].fetch.remote(refs)) == nbytes
            del refs

        version = [0]

        def object_store(n: int) -> None:
            version[0] += 1
            ray.get(sender.publish.remote(version[0]))
            assert ray.get([r.sync.remote() for r in receivers[:n]]) == [version[0]] * n

        def collective(n: int) -> None:
            version[0] += 1
            out = ray.get([sender.broadcast.remote(version[0], args.bucket_mb)]
                          + [r.receive.remote(args.bucket_mb) for r in receivers[:n]])
            assert out == [version[0]] * (n + 1)

        baseline()  # warm-up: first use of the object store and of each worker's imports
        object_store(max(counts))
        base = timed(baseline)
        rows = []
        for n in counts:
            rows.append(("object_store", n, timed(lambda: object_store(n))))
        for n in counts:
            addr, port = ray.get(sender.address.remote())
            ray.get([sender.join.remote(addr, port, n + 1)]
                    + [r.join.remote(addr, port, n + 1, i + 1)
                       for i, r in enumerate(receivers[:n])])
            collective(n)  # warm-up of the new group
            rows.append(("collective", n, timed(lambda: collective(n))))
        base_again = timed(baseline)

        print(f"\nbaseline (one ray.put + one ray.get, no load): {base:.3f} s "
              f"(again after the transports: {base_again:.3f} s)")
        print(f"{'transport':<14}{'receivers':>10}{'seconds':>10}{'x baseline':>12}")
        for name, n, sec in rows:
            print(f"{name:<14}{n:>10}{sec:>10.3f}{sec / base:>12.2f}")
        top = max(counts)
        verdict = []
        for name in ("object_store", "collective"):
            sec = next(s for t, n, s in rows if t == name and n == top)
            verdict.append(f"{name} {sec / base:.2f}x ({'met' if sec <= 2 * base else 'NOT met'})")
        print(f"\ntarget (at {top} samplers <= 2x one put+get): " + ", ".join(verdict))
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
