"""What a run's actors ask of the cluster, and whether the cluster can give it (pure, no Ray).

`demands(cfg)` lists the actors that reserve resources: samplers, executors and the learner's
placement-group bundles (the bookkeeping actors, rltf-buffer, rltf-weights and rltf-driver,
reserve nothing). `shortfalls(demands, nodes, node_types)` packs them, largest first, onto the
nodes the cluster has and then onto the nodes its autoscaler may add, and returns one line for
each resource the cluster cannot provide and each actor too large for any node, naming the
settings that change it. `cluster/startup.py` runs this before any actor starts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

GB = 1024 ** 3


@dataclass(frozen=True)
class Demand:
    what: str  # "sampler", "executor", "learner rank"
    count: int
    bundle: dict[str, float]  # what one of them reserves (Ray resource names; memory in bytes)
    count_setting: str  # the setting that gives `count`
    settings: dict[str, str] = field(default_factory=dict)  # resource -> the setting behind it

    def label(self, n: int | None = None) -> str:
        n = self.count if n is None else n
        return f"{n} {self.what}{'' if n == 1 else 's'}"


@dataclass(frozen=True)
class NodeType:
    """A node shape an autoscaler may add, `max_more` more times (math.inf: no limit)."""

    name: str
    resources: dict[str, float]
    max_more: float


def _bundle(cpus: float, gpus: float, memory_gb: float, custom: dict[str, float]
            ) -> dict[str, float]:
    b = {"CPU": cpus, "GPU": gpus, "memory": memory_gb * GB, **custom}
    return {k: float(v) for k, v in b.items() if v}


def demands(cfg, executors: int | None = None) -> list[Demand]:
    """The actors of a run that reserve resources (`executors` overrides executor.workers)."""
    s, e, lr = cfg.sampler, cfg.executor, cfg.learner
    custom = lambda section: {k: f"{section}.resources" for k in getattr(cfg, section).resources}
    return [
        Demand("sampler", s.actors, _bundle(s.cpus_per_actor, s.gpus_per_actor, s.memory_gb,
                                            s.resources), "sampler.actors",
               {"CPU": "sampler.cpus_per_actor", "GPU": "sampler.gpus_per_actor",
                "memory": "sampler.memory_gb", **custom("sampler")}),
        Demand("executor", e.workers if executors is None else executors,
               _bundle(e.cpus_per_worker, 0, 0, e.resources),
               "executor.max_workers" if executors is not None else "executor.workers",
               {"CPU": "executor.cpus_per_worker", **custom("executor")}),
        Demand("learner rank", lr.ranks, _bundle(lr.cpus_per_rank, lr.gpus_per_rank,
                                                 lr.memory_gb, lr.resources), "learner.ranks",
               {"CPU": "learner.cpus_per_rank", "GPU": "learner.gpus_per_rank",
                "memory": "learner.memory_gb", **custom("learner")}),
    ]


def fmt_amount(resource: str, value: float) -> str:
    if resource == "memory":
        return f"{value / GB:.3g} GiB"
    return f"{value:g}"


def fmt_bundle(bundle: dict[str, float]) -> str:
    return "{" + ", ".join(f"{k}: {fmt_amount(k, v)}" for k, v in bundle.items()) + "}"


def _fits(bundle: dict[str, float], free: dict[str, float]) -> bool:
    return all(free.get(k, 0.0) + 1e-9 >= v for k, v in bundle.items())


def _take(bundle: dict[str, float], free: dict[str, float]) -> None:
    for k, v in bundle.items():
        free[k] = free.get(k, 0.0) - v


def pack(dem: list[Demand], nodes: list[dict[str, float]],
         node_types: list[NodeType] = ()) -> tuple[list[tuple[Demand, dict]], list[str]]:
    """Place every bundle, largest first: on a node with room, else on a new node of the first
    autoscaler type that holds it. Returns (the bundles that found no place, the names of the
    autoscaled node types used, one entry per new node)."""
    free = [dict(n) for n in nodes]
    more = {t.name: t.max_more for t in node_types}
    bundles = [(d, d.bundle) for d in dem for _ in range(d.count) if d.bundle]
    bundles.sort(key=lambda x: (-x[1].get("GPU", 0), -len(x[1]), -x[1].get("CPU", 0)))
    unplaced, added = [], []
    for d, b in bundles:
        spot = next((f for f in free if _fits(b, f)), None)
        if spot is None:
            t = next((t for t in node_types if more[t.name] >= 1 and _fits(b, t.resources)),
                     None)
            if t is not None:
                more[t.name] -= 1
                spot = dict(t.resources)
                free.append(spot)
                added.append(t.name)
        if spot is None:
            unplaced.append((d, b))
        else:
            _take(b, spot)
    return unplaced, added


def shortfalls(dem: list[Demand], nodes: list[dict[str, float]],
               node_types: list[NodeType] = ()) -> list[str]:
    """One line for each resource the cluster (with what its autoscaler may add) lacks, and
    for each actor that fits on no node; [] when every actor has a place."""
    lines = []
    keys = sorted({k for d in dem if d.count for k in d.bundle})
    short_keys = set()
    for k in keys:
        users = [d for d in dem if d.count and d.bundle.get(k)]
        need = sum(d.count * d.bundle[k] for d in users)
        have = sum(n.get(k, 0.0) for n in nodes)
        extra = sum(t.resources.get(k, 0.0) * t.max_more for t in node_types
                    if t.resources.get(k, 0.0))
        if need <= have + extra + 1e-9:
            continue
        short_keys.add(k)
        parts = ", ".join(f"{d.label()} x {fmt_amount(k, d.bundle[k])} "
                          f"[{d.settings.get(k, '?')}]" for d in users)
        can_add = ("its autoscaler can add none" if not extra else
                   f"its autoscaler can add {fmt_amount(k, extra)}")
        if have == 0 and not extra:
            where = f"no node has {k} and no autoscaler node type offers it"
        else:
            where = f"the cluster has {fmt_amount(k, have)} and {can_add}"
        settings = sorted({d.settings.get(k, "?") for d in users} | {d.count_setting
                                                                     for d in users})
        if k in ("CPU", "GPU", "memory"):
            add = f"add nodes with more {k}"
        else:
            add = (f"start nodes that offer it (ray start --resources='{{\"{k}\": N}}') or "
                   "drop it from the resources setting")
        lines.append(f"{k}: needs {fmt_amount(k, need)} ({parts}); {where}: lower "
                     f"{', '.join(settings)}, or {add}")
    unplaced, _ = pack(dem, nodes, node_types)
    seen = set()
    for d, b in unplaced:
        if d.what in seen or set(b) & short_keys:
            continue
        seen.add(d.what)
        biggest = max(list(nodes) + [t.resources for t in node_types],
                      key=lambda n: tuple(n.get(k, 0.0) for k in b), default={})
        largest = fmt_bundle({k: biggest.get(k, 0.0) for k in b})
        n = sum(1 for x, _ in unplaced if x is d)
        lines.append(f"{d.label(n)}: each asks for {fmt_bundle(b)}, more than any node has "
                     f"free beside the rest (the largest node offers {largest}): lower "
                     f"{', '.join(sorted(set(d.settings[k] for k in b if k in d.settings)))}"
                     f" or {d.count_setting}, or add larger nodes")
    return lines


def pending(dem: list[Demand], available: list[dict[str, float]]) -> list[str]:
    """What does not fit in the resources free right now (one entry per demand)."""
    unplaced, _ = pack(dem, available)
    out = []
    for d in dem:
        n = sum(1 for x, _ in unplaced if x is d)
        if n:
            out.append(f"{d.label(n)} x {fmt_bundle(d.bundle)}")
    return out


def node_types_from_config(groups: list[tuple[str, dict[str, float], int]],
                           live_per_group: dict[str, int] | None = None) -> list[NodeType]:
    """Autoscaler node groups (name, resources, max_count; -1 = no limit) as NodeTypes."""
    live = live_per_group or {}
    out = []
    for name, res, max_count in groups:
        if not res or max_count == 0:
            continue
        more = math.inf if max_count < 0 else max(0, max_count - live.get(name, 0))
        out.append(NodeType(name, {k: float(v) for k, v in res.items()}, more))
    return out
