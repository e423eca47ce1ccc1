"""Many nodes, simulated with `ray.cluster_utils.Cluster` (one raylet per node on this
machine, each with its own declared resources): a head with CPUs only, a "GPU-like" node that
offers the custom resource gpu_node (samplers and learner ranks ask for it) and two CPU-only
executor nodes that offer executor_node (executors ask for it), brought in as an autoscaler
would.

A short `rltf train` joins the cluster: samplers and learner ranks land on the gpu_node node
and executors only on executor nodes; `rltf scale executors` grows the pool there and refuses
what no node can hold; autoscaling grows and shrinks it there too; an executor node removed
(its processes killed) in the middle of the run loses no result: every program is judged
exactly once. Then the gpu_node node is removed the same way, with the sampler and learner
rank on it (and any bookkeeping actor Ray put there): a new one comes, as an autoscaler
replaces a lost node, the run rebuilds its actors there from the last checkpoint and
finishes, every program judged at most once and accounted for. Before that, a topology that needs nodes an autoscaler
is bringing waits for them, logging what it waits for, and gives up after
cluster.placement_timeout_s when they do not come."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

from ray_head import free_port, kill_processes_of, own_temp_dir, own_token
from tiny_models import SMALL_RUN

pytestmark = [pytest.mark.integration, pytest.mark.slow]

GPU_NODE = {"gpu_node": 2}  # on a node of its own: the head cannot be removed
EXECUTOR_NODE = {"executor_node": 4}
TOPOLOGY = ["sampler.resources={gpu_node: 1}", "learner.resources={gpu_node: 1}",
            "executor.resources={executor_node: 1}", "sampler.cpus_per_actor=1",
            "learner.cpus_per_rank=1", "executor.cpus_per_worker=0.5"]
FAST = [*SMALL_RUN, "train.eval_every=100", "learner.checkpoint_every=100"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    import ray._private.utils as ray_utils

    temp_dir = ""
    mp = pytest.MonkeyPatch()
    # Cluster writes its address to /tmp/ray (the pointer `address="auto"` follows, which
    # other clusters on this machine own): keep it in this cluster's temp dir
    write = ray_utils.write_ray_address
    mp.setattr(ray_utils, "write_ray_address", lambda address, _=None: write(address, temp_dir))
    # the nodes listen on 127.0.0.1 only; ray.init would turn that address into the
    # machine's own IP before connecting
    mp.setattr(ray._private.services, "resolve_ip_for_localhost", lambda host: host)
    with own_token(tmp_path_factory.mktemp("token")):
        # a head with CPUs only and a GPU-like node (samplers, learner ranks); executor
        # nodes join later
        for attempt in range(3):  # Ray gives a node 30 s to register: a busy machine may not
            temp_dir = own_temp_dir()
            try:
                # (shutdown_at_exit=False: nodes can then be added from the test's thread,
                # playing the autoscaler; the fixture removes them)
                c = Cluster(initialize_head=True, shutdown_at_exit=False, head_node_args={
                    "num_cpus": 2, "node_ip_address": "127.0.0.1", "temp_dir": temp_dir,
                    "include_dashboard": False, "dashboard_port": free_port()})
                break
            except Exception as err:
                kill_processes_of(temp_dir)  # nothing of a failed start stays behind
                if "timed out during startup" not in str(err) or attempt == 2:
                    raise
        try:
            add_node(c, GPU_NODE)
            ray.init(address=c.address, namespace="rltf", log_to_driver=False,
                     _node_ip_address="127.0.0.1")
            yield c
        finally:
            ray.shutdown()
            for node in list(c.worker_nodes):  # not Cluster.shutdown(): it also deletes
                c.remove_node(node)             # /tmp/ray's pointer to other clusters
            if c.head_node is not None:
                c.remove_node(c.head_node)
            mp.undo()
            for folder in [temp_dir, *NODE_TEMP_DIRS]:
                shutil.rmtree(folder, ignore_errors=True)


NODE_TEMP_DIRS: list[str] = []


def add_node(c, resources: dict):
    """A worker node with 2 CPUs and `resources`, in a temp dir of its own: Ray gives a node
    30 s to register, which a busy machine may miss; such a start is killed (by its temp
    dir) and tried again."""
    for attempt in range(3):
        temp_dir = own_temp_dir()
        NODE_TEMP_DIRS.append(temp_dir)
        try:
            return c.add_node(num_cpus=2, resources=resources, node_ip_address="127.0.0.1",
                              temp_dir=temp_dir)
        except Exception as err:
            kill_processes_of(temp_dir)
            if "timed out during startup" not in str(err) or attempt == 2:
                raise


def _args(cache: Path, run: Path, steps: int, *extra: str) -> argparse.Namespace:
    return argparse.Namespace(config=None, run_dir=str(run), max_steps=steps, max_minutes=None,
                              resume=None, overrides=[*TOPOLOGY, *FAST, *extra,
                                                      f"model.cache_dir={cache}"])


def _placement() -> dict[str, str]:
    """actor name -> node id, of the live rltf actors."""
    from ray._private import state

    return {a["Name"]: a["Address"]["NodeID"] for a in state.actors().values()
            if a.get("State") == "ALIVE" and a.get("Name", "").startswith("rltf-")}


def _train(args) -> int:
    from cluster import train_cmd

    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return train_cmd.run(args)
    finally:
        for s, h in handlers.items():
            signal.signal(s, h)


def _announce(max_executor_nodes: int | None) -> None:
    """Report node types to the GCS as a Ray autoscaler does (None: no autoscaler): up to
    `max_executor_nodes` executor nodes like the ones this test adds, and a GPU-like node."""
    from ray._raylet import GCS_AUTOSCALER_CLUSTER_CONFIG_KEY as KEY
    from ray._raylet import GCS_AUTOSCALER_STATE_NAMESPACE as NS
    from ray.core.generated import autoscaler_pb2
    from ray.experimental.internal_kv import _internal_kv_del, _internal_kv_put

    if max_executor_nodes is None:
        _internal_kv_del(KEY, namespace=NS)
        return
    config = autoscaler_pb2.ClusterConfig(node_group_configs=[
        autoscaler_pb2.NodeGroupConfig(name="executors", resources={"CPU": 2, **EXECUTOR_NODE},
                                       max_count=max_executor_nodes),
        autoscaler_pb2.NodeGroupConfig(name="gpu", resources={"CPU": 2, **GPU_NODE},
                                       max_count=1)])
    _internal_kv_put(KEY, config.SerializeToString(), overwrite=True, namespace=NS)


def _asked_for_nodes() -> bool:
    """Whether start-up has asked the autoscaler for resources, read where Ray's autoscaler
    reads it (`request_resources`: a GCS key for the default autoscaler, a GCS resource
    constraint for autoscaler v2)."""
    from ray._private.ray_constants import AUTOSCALER_RESOURCE_REQUEST_CHANNEL
    from ray.autoscaler.v2.utils import is_autoscaler_v2
    from ray.experimental.internal_kv import _internal_kv_get

    if is_autoscaler_v2():
        import ray
        from ray._raylet import GcsClient
        from ray.autoscaler.v2.sdk import get_cluster_resource_state

        gcs = GcsClient(address=ray.get_runtime_context().gcs_address)
        return any(c.resource_requests
                   for c in get_cluster_resource_state(gcs).cluster_resource_constraints)
    raw = _internal_kv_get(AUTOSCALER_RESOURCE_REQUEST_CHANNEL)
    return bool(raw and json.loads(raw))


def test_an_autoscaled_topology_gives_up_on_time_and_one_without_stops_at_once(
        cluster, tmp_path, tiny_cache, capsys, monkeypatch):
    import cluster.startup as startup
    from cluster.startup import ResourceError

    monkeypatch.setattr(startup, "LOG_EVERY_S", 2.0)
    _announce(2)
    try:
        with pytest.raises(ResourceError, match=r"gave up after 6s .*1 executor x "
                           r"\{CPU: 0.5, executor_node: 1\}"):
            _train(_args(tiny_cache, tmp_path / "r1", 2, "cluster.placement_timeout_s=6"))
    finally:
        _announce(None)
    err = capsys.readouterr().err
    assert "start-up: waiting for 1 executor" in err and "still waiting after" in err
    t0 = time.time()
    while _placement() and time.time() - t0 < 30:  # nothing left behind (ray.kill is async)
        time.sleep(0.5)
    assert not _placement()
    # without the autoscaler, the same topology stops at once, naming executor_node
    with pytest.raises(ResourceError, match="executor_node: needs 1 .*no node has "
                       "executor_node"):
        _train(_args(tiny_cache, tmp_path / "r2", 2))


def test_placement_scaling_and_executor_and_gpu_nodes_lost_mid_run(cluster, tmp_path,
                                                                   tiny_cache, capsys):
    import ray

    from cluster.controller import scale_executors

    run = tmp_path / "run"
    args = _args(tiny_cache, run, 12, "executor.autoscale=true", "executor.min_workers=1",
                 "executor.max_workers=4", "executor.autoscale_cooldown_s=3",
                 "executor.target_queue_per_worker=1", "learner.checkpoint_every=4")
    gpu_ids = {n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("gpu_node")}
    ex_nodes: list = []
    seen: list[dict] = []
    notes: list[str] = []

    errors: list[BaseException] = []

    def autoscaler_and_faults():
        try:
            act()
        except BaseException as err:  # reported by the test, not lost with the thread
            errors.append(err)
            raise

    def act():
        deadline = time.time() + 600
        removed = scaled = gpu_removed = False
        while time.time() < deadline and not (run / "summary.json").exists():
            if not ex_nodes and _asked_for_nodes():  # bring the nodes start-up waits for
                ex_nodes.extend(add_node(cluster, EXECUTOR_NODE) for _ in range(2))
                notes.append("added 2 executor nodes")
            where = _placement()
            if where:
                seen.append(where)
            steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text()
                     .splitlines() if "loss/total" in x] if (run / "metrics.jsonl").exists() \
                else []
            if steps and not scaled:
                scaled = True
                notes.append(f"scale 3: {scale_executors(3, None, 120, 'rltf', notes.append)}")
                notes.append(f"scale 9: {scale_executors(9, None, 60, 'rltf', notes.append)}")
            if steps and steps[-1] >= 4 and not removed:
                victim = next((n for n in ex_nodes if n.node_id in where.values()), None)
                if victim is not None:
                    removed = True
                    cluster.remove_node(victim, allow_graceful=False)
                    notes.append(f"removed executor node {victim.node_id[:8]} after step "
                                 f"{steps[-1]}")
            victim = next((n for n in cluster.worker_nodes
                           if n.node_id == where.get("rltf-learner-rank0")), None)
            if steps and steps[-1] >= 9 and removed and not gpu_removed and victim:
                # the node with the sampler and learner rank: lost, and replaced as an
                # autoscaler replaces a lost node (the run waits for it, see _announce)
                gpu_removed = True
                cluster.remove_node(victim, allow_graceful=False)
                notes.append(f"removed gpu node {victim.node_id[:8]} after step {steps[-1]}")
                new = add_node(cluster, GPU_NODE)
                gpu_ids.add(new.node_id)
                notes.append(f"added gpu node {new.node_id}")
            time.sleep(0.5)

    _announce(2)
    thread = threading.Thread(target=autoscaler_and_faults, daemon=True)
    thread.start()
    try:
        assert _train(args) == 0, errors
    finally:
        _announce(None)
    thread.join(timeout=10)
    assert not errors, errors
    err = capsys.readouterr().err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 12, err[-3000:]
    assert notes[0] == "added 2 executor nodes" and "start-up: waiting for 1 executor" in err
    assert any(x.startswith("removed executor node") for x in notes), (notes, err[-3000:])
    # explicit scaling: 3 fit on the executor nodes, 9 do not (8 executor_node in all, and
    # the autoscaler may add no more)
    assert "scale 3: 0" in notes and "scale 9: 1" in notes, notes
    assert any("executor_node: needs 9" in x for x in notes), notes
    # autoscaling changed the pool too
    assert re.search(r"executor pool \d+ -> \d+ actors \(autoscaling", err), err[-3000:]
    # every actor on the nodes its resources name, all the time
    ex_ids = {n.node_id for n in ex_nodes}
    for where in seen:
        for name, node in where.items():
            if name.startswith(("rltf-sampler", "rltf-learner")):
                assert node in gpu_ids, (name, where)
            if name.startswith("rltf-executor"):
                assert node in ex_ids, (name, where)
    assert any(len([n for n in w if n.startswith("rltf-executor")]) >= 3 for w in seen)
    # the gpu_node node lost after step 9: the run went back to the step-8 checkpoint and
    # ended with its sampler and learner rank on the new node
    assert any(x.startswith("removed gpu node") for x in notes), (notes, err[-3000:])
    new_gpu = next(x for x in notes if x.startswith("added gpu node")).split()[-1]
    assert summary["restarts"] == 1
    assert f"from {run / 'checkpoints' / 'step-000008'}" in err, err[-3000:]
    last = [w for w in seen if "rltf-learner-rank0" in w][-1]
    assert {node for name, node in last.items()
            if name.startswith(("rltf-sampler", "rltf-learner"))} == {new_gpu}, last
    # the lost nodes' executors were replaced; no result judged twice, every program
    # accounted for (those in flight when the run rebuilt its actors are abandoned)
    assert summary["results_unexpected"] == 0
    assert summary["programs_submitted"] == (
        summary["programs_judged"] + summary["programs_abandoned_by_restarts"]
        + summary["programs_in_flight_at_end"])
