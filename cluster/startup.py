"""Start-up on a Ray cluster without silent waits.

Before any actor starts, `check_resources` compares what the run asks for (samplers,
executors, the learner's placement-group bundles; `cluster/resources.py`) with the nodes the
cluster has and the node types its autoscaler may add (as the autoscaler reports them to the
GCS): what no node can give stops the run at once, one line per missing resource with the
setting that changes it. `wait_for_resources` then waits, while it logs what it waits for
every 30 s, until the demands fit in what is free now (resources busy with other work, or
nodes an autoscaler is bringing: they are asked for with `request_resources`), and gives up
after `cluster.placement_timeout_s`. `wait_ready` does the same for actors and placement
groups being created. `create_named` gives a replacement its predecessor's name once the dead
one has let it go, and never collides with it.
"""

from __future__ import annotations

import itertools
import re
import time
from typing import Any, Callable

from cluster.resources import Demand, demands, node_types_from_config, pending, shortfalls

LOG_EVERY_S = 30.0
_IGNORED = ("node:", "accelerator_type:", "object_store_memory", "bundle_group_")
_PG_RESOURCE = re.compile(r"_group_(\d+_)?[0-9a-f]{16,}$")  # a placement group's own names


class StartupError(RuntimeError):
    """The run's actors could not start; the message says why and what to change."""


class ResourceError(StartupError):
    """The cluster cannot hold the run's actors (or did not within the timeout)."""


def _clean(resources: dict) -> dict[str, float]:
    return {k: float(v) for k, v in resources.items()
            if not k.startswith(_IGNORED) and not _PG_RESOURCE.search(k)}


def cluster_view() -> tuple[list[dict], list[dict], list]:
    """(total resources of each live node, free resources of each, autoscaler node types)."""
    import ray
    from ray._private import state

    alive = [n for n in ray.nodes() if n.get("Alive")]
    totals = [_clean(n["Resources"]) for n in alive]
    free_by_id = state.available_resources_per_node()
    free = [_clean(free_by_id.get(n["NodeID"], {})) for n in alive]
    groups, live = [], {}
    try:
        config = state.state.get_cluster_config()
    except Exception:  # no autoscaler has reported its node types
        config = None
    if config is not None:
        groups = [(g.name, dict(g.resources), g.max_count) for g in config.node_group_configs]
        for n, total in zip(alive, totals):  # live nodes of each group: by label, or by shape
            group = (n.get("Labels") or {}).get("ray.io/node-group") or next(
                (name for name, res, _ in groups
                 if res and all(total.get(k) == v for k, v in res.items())), None)
            if group:
                live[group] = live.get(group, 0) + 1
    return totals, free, node_types_from_config(groups, live)


# the anonymous node type Ray's read-only monitor gives each node ("node_" + its node id)
_READONLY_TYPE = re.compile(r"node_[0-9a-f]{56}")


def adds_nodes(report: dict | None) -> bool:
    """Whether an `autoscaler_report` (Ray's v1 monitor's status) comes from an autoscaler
    that can add nodes. Every cluster's head runs the monitor; without an autoscaling config
    (a plain `ray start --head`) its provider is read-only and names each node type after the
    node itself, so only named types (those of a cluster config) mean nodes may come."""
    if not report:
        return False
    types = set(report.get("active_nodes") or {}) | set(report.get("idle_nodes") or {}) \
        | set(report.get("pending_launches") or {}) \
        | {n[1] for n in report.get("pending_nodes") or [] if len(n) > 1} \
        | {n[1] for n in report.get("failed_nodes") or [] if len(n) > 1}
    return any(not _READONLY_TYPE.fullmatch(str(x)) for x in types)


def autoscaler_without_node_types() -> bool:
    """Whether an autoscaler that can add nodes runs but has not told the GCS its node types:
    Ray's default (v1) autoscaler reports its status (an `autoscaler_report`) every few
    seconds, and its node types nowhere a driver can read. A plain cluster's read-only
    monitor reports too, but adds nothing (`adds_nodes`)."""
    import json

    from ray._private.ray_constants import DEBUG_AUTOSCALING_STATUS
    from ray.experimental.internal_kv import _internal_kv_get

    raw = _internal_kv_get(DEBUG_AUTOSCALING_STATUS)
    try:
        return bool(raw) and adds_nodes(json.loads(raw).get("autoscaler_report"))
    except ValueError:
        return False


def check_resources(cfg, executors: int | None = None,
                    log: Callable[[str], Any] | None = None) -> list[Demand]:
    """The run's demands, or ResourceError listing every one the cluster cannot meet. Where
    an autoscaler runs that does not say what nodes it may add, what no node has now is not
    an error: it is logged (`log`) and waited for (`wait_for_resources`, bounded)."""
    dem = demands(cfg, executors)
    totals, _, node_types = cluster_view()
    lines = shortfalls(dem, totals, node_types)
    if lines and not node_types and autoscaler_without_node_types():
        if log is not None:
            log("start-up: no node has room for all of the run yet ("
                + "; ".join(x.split(" (", 1)[0] for x in lines) + "), and the cluster's "
                "autoscaler does not report the node types it may add, so that cannot be "
                "checked: the run asks it for them and waits (cluster.placement_timeout_s)")
        return dem
    if lines:
        raise ResourceError("this Ray cluster cannot hold the run (checked before starting any "
                            "actor):\n  " + "\n  ".join(lines))
    return dem


def wait_for_resources(dem: list[Demand], timeout_s: float, log: Callable[[str], Any],
                       log_every_s: float | None = None) -> bool:
    """Wait until `dem` fits in the resources free now. Returns whether the autoscaler was
    asked for nodes (then call `release_request()` once the actors have started)."""
    from ray.autoscaler.sdk import request_resources

    log_every_s = LOG_EVERY_S if log_every_s is None else log_every_s
    t0 = last_log = time.monotonic()
    asked = False
    while True:
        _, free, _ = cluster_view()
        missing = pending(dem, free)
        if not missing:
            return asked
        waited = time.monotonic() - t0
        if waited >= timeout_s:
            raise ResourceError(
                f"start-up gave up after {timeout_s:.0f}s (cluster.placement_timeout_s): "
                f"still no room for {'; '.join(missing)}; the cluster could hold them, but they "
                "stayed busy or the autoscaler did not bring the nodes: free them, check the "
                "autoscaler, or raise cluster.placement_timeout_s")
        if not asked:
            request_resources(bundles=[d.bundle for d in dem for _ in range(d.count)
                                       if d.bundle])
            asked = True
            log(f"start-up: waiting for {'; '.join(missing)} (busy now, or on nodes the "
                f"autoscaler may add); giving up after {timeout_s:.0f}s "
                "(cluster.placement_timeout_s)")
        elif time.monotonic() - last_log >= log_every_s:
            last_log = time.monotonic()
            log(f"start-up: still waiting after {waited:.0f}s for {'; '.join(missing)}")
        time.sleep(min(1.0, log_every_s))


def release_request() -> None:
    from ray.autoscaler.sdk import request_resources

    request_resources(bundles=[])


def wait_ready(refs: list, what: str, timeout_s: float, log: Callable[[str], Any],
               log_every_s: float | None = None) -> list:
    """ray.get(refs), logging every `log_every_s` while some are not ready and raising
    ResourceError after `timeout_s`."""
    import ray
    from ray.exceptions import RayError

    log_every_s = LOG_EVERY_S if log_every_s is None else log_every_s
    t0 = time.monotonic()
    left = list(refs)
    while left:
        waited = time.monotonic() - t0
        step = max(0.0, min(log_every_s, timeout_s - waited))
        _, left = ray.wait(left, num_returns=len(left), timeout=step)
        if not left:
            break
        waited = time.monotonic() - t0
        if waited >= timeout_s:
            raise ResourceError(f"start-up gave up after {timeout_s:.0f}s "
                                f"(cluster.placement_timeout_s): {len(left)} of {len(refs)} "
                                f"{what} did not start; `ray status` shows what is pending")
        log(f"start-up: waiting for {len(left)} of {len(refs)} {what} ({waited:.0f}s)")
    try:
        return ray.get(list(refs))
    except RayError as err:  # an actor failed to start: its own error's last line says why
        raise StartupError(f"{what} could not start: {root_cause(err)}") from err


def root_cause(err: BaseException) -> str:
    """The innermost `SomeError: message` line of a Ray error (its text holds the remote
    traceback)."""
    lines = [x.strip() for x in str(err).splitlines() if x.strip()]
    found = [x for x in lines if re.match(r"^[\w.]*(Error|Exception)\b.*:", x)]
    return (found or lines or [type(err).__name__])[-1][:500]


def create_named(remote_cls, name: str, args: tuple = (), kwargs: dict | None = None,
                 wait_s: float = 10.0, **options):
    """`remote_cls.options(name=name, **options).remote(*args, **kwargs)`. A predecessor
    killed a moment ago (SIGKILL, a lost node) holds the name until the GCS has marked it
    dead: wait up to `wait_s` for that, then take `name.1`, `name.2`, ... instead."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return remote_cls.options(name=name, **options).remote(*args, **(kwargs or {}))
        except ValueError:  # ActorAlreadyExistsError: the name is still held
            if time.monotonic() >= deadline:
                break
            time.sleep(0.2)
    for n in itertools.count(1):
        try:
            return remote_cls.options(name=f"{name}.{n}", **options).remote(
                *args, **(kwargs or {}))
        except ValueError:
            continue


def waiting_actors(prefix: str) -> list[str]:
    """Names of this job's actors starting with `prefix` that wait for resources (or for a
    restart), e.g. executors whose node was lost while no other node has room."""
    import ray
    from ray._private import state

    job = ray.get_runtime_context().get_job_id()
    return sorted(a.get("Name", "") for a in state.actors().values()
                  if a.get("JobID") == job and a.get("Name", "").startswith(prefix)
                  and a.get("State") in ("PENDING_CREATION", "DEPENDENCIES_UNREADY",
                                         "RESTARTING"))
