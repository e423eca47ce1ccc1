"""A Ray cluster grown and shrunk by Ray's own autoscaler, and a short `rltf train` on it; run
by tests/test_cluster_autoscaler.py inside private PID, network and mount namespaces:

    unshare --pid --fork --net --mount-proc --mount -- python tests/autoscaled_cluster.py OUT CACHE

Ray's fake multi-node provider (`ray.autoscaler._private.fake_multi_node`, the one Ray's own
autoscaler tests use) starts each node the autoscaler launches as a raylet on this machine.
It needs `ray stop --force` at the end and binds the machine's address; inside the
namespaces `ray stop` sees only this cluster's processes, loopback is the only address, and
/tmp/ray and HOME are folders of OUT, so nothing of the machine's other Ray clusters is seen
or touched. When this script ends, the kernel ends every process left in the namespace.

The head offers 1 CPU and nothing the run asks for. The autoscaler may add a GPU-like node
(`gpu_node`: the sampler and the learner rank ask for it) and up to two CPU-only executor
nodes (`executor_node`: executors ask for it), as in deploy/. What happened is written to
OUT/result.json for the test to judge: nodes and where the actors ran at each poll,
`rltf scale executors` answers, the run's summary and log."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]
VENV_BIN = Path(sys.executable).parent

HEAD_TYPE = "ray.head.default"
NODE_TYPES = {
    HEAD_TYPE: {"resources": {"CPU": 1}, "node_config": {}, "max_workers": 0},
    "gpu": {"resources": {"CPU": 2, "gpu_node": 2}, "node_config": {},
            "min_workers": 0, "max_workers": 1},
    "executors": {"resources": {"CPU": 2, "executor_node": 2}, "node_config": {},
                  "min_workers": 0, "max_workers": 2},
}
TOPOLOGY = ["sampler.resources={gpu_node: 1}", "learner.resources={gpu_node: 1}",
            "executor.resources={executor_node: 1}", "sampler.cpus_per_actor=1",
            "learner.cpus_per_rank=1", "executor.cpus_per_worker=0.5", "executor.workers=1",
            "executor.min_workers=1", "executor.max_workers=3", "cluster.address=auto",
            "cluster.placement_timeout_s=240"]
STEPS = 10


def autoscaling_config() -> dict:
    """A cluster launcher config for the fake multi-node provider (Ray's wheel lacks the
    example.yaml that ray.cluster_utils.AutoscalingCluster reads): idle nodes go after 6 s."""
    return {"cluster_name": "rltf-autoscaled", "max_workers": 3, "upscaling_speed": 1.0,
            "idle_timeout_minutes": 0.1, "docker": {}, "auth": {},
            "provider": {"type": "fake_multinode", "use_node_id_as_ip": True,
                         "disable_node_updaters": True, "disable_launch_config_check": True},
            "head_node_type": HEAD_TYPE, "available_node_types": NODE_TYPES,
            "file_mounts": {}, "cluster_synced_files": [], "file_mounts_sync_continuously": False,
            "rsync_exclude": [], "rsync_filter": [], "initialization_commands": [],
            "setup_commands": [], "head_setup_commands": [], "worker_setup_commands": [],
            "head_start_ray_commands": [], "worker_start_ray_commands": []}


def private_machine(out: Path) -> dict:
    """Loopback up; /tmp/ray and HOME in OUT (this mount namespace only)."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    (out / "tmp-ray").mkdir(parents=True, exist_ok=True)
    (out / "home").mkdir(exist_ok=True)
    Path("/tmp/ray").mkdir(exist_ok=True)
    subprocess.run(["mount", "--make-rprivate", "/"], check=True)
    subprocess.run(["mount", "--bind", str(out / "tmp-ray"), "/tmp/ray"], check=True)
    env = {**os.environ, "HOME": str(out / "home"), "RAY_FAKE_CLUSTER": "1",
           "AUTOSCALER_UPDATE_INTERVAL_S": "1", "PYTHONPATH": str(HERE.parent)}
    env.pop("RAY_ADDRESS", None)
    os.environ.clear()
    os.environ.update(env)
    return env


def start_head(out: Path, env: dict) -> None:
    config = out / "autoscaler.json"
    config.write_text(json.dumps(autoscaling_config()))
    for attempt in range(3):  # Ray gives a node 30 s to register: a busy machine may miss it
        done = subprocess.run([str(VENV_BIN / "ray"), "start", "--head", "--num-cpus=1",
                               "--node-ip-address=127.0.0.1", "--disable-usage-stats",
                               "--include-dashboard=false", f"--autoscaling-config={config}"],
                              env=env, capture_output=True, text=True)
        if done.returncode == 0:
            return
        stop()
        if attempt == 2 or "timed out during startup" not in done.stdout + done.stderr:
            raise RuntimeError(f"ray start failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")


def stop() -> None:
    """`ray stop --force`: safe here, it sees this namespace's processes only."""
    subprocess.run([str(VENV_BIN / "ray"), "stop", "--force"], capture_output=True)


def nodes() -> list[dict]:
    import ray

    return [{"id": n["NodeID"], "alive": n["Alive"], "resources": n["Resources"]}
            for n in ray.nodes()]


def placement() -> dict[str, str]:
    from ray._private import state

    return {a["Name"]: a["Address"]["NodeID"] for a in state.actors().values()
            if a.get("State") == "ALIVE" and a.get("Name", "").startswith("rltf-")}


def trained_steps(run: Path) -> list[int]:
    path = run / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(x)["step"] for x in path.read_text().splitlines() if "loss/total" in x]


def scale(n: int, env: dict) -> dict:
    done = subprocess.run([str(VENV_BIN / "rltf"), "scale", "executors", str(n),
                           "--timeout", "240"], env=env, capture_output=True, text=True)
    return {"n": n, "rc": done.returncode, "out": (done.stdout + done.stderr)[-1500:],
            "t": time.time()}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("cache", type=Path)
    a = ap.parse_args()
    out, result = a.out, {"polls": [], "scales": [], "errors": []}
    env = private_machine(out)
    t0 = time.time()
    try:
        start_head(out, env)
        result["head_started_s"] = time.time() - t0
        run_and_watch(out, a.cache, env, result)
    except BaseException as err:  # reported by the test
        import traceback

        result["errors"].append(traceback.format_exc()[-4000:])
        if not isinstance(err, Exception):
            raise
    finally:
        result["wall_s"] = time.time() - t0
        (out / "result.json").write_text(json.dumps(result, indent=1))
        stop()
    return 0


def run_and_watch(out: Path, cache: Path, env: dict, result: dict) -> None:
    import ray

    from cluster import train_cmd

    ray.init(address="auto", namespace="rltf", log_to_driver=False)
    result["nodes_at_start"] = nodes()
    run = out / "run"
    done = threading.Event()

    def watch():
        while not done.is_set():
            try:
                where, steps = placement(), trained_steps(run)
                result["polls"].append({"t": time.time(), "nodes": nodes(), "where": where,
                                        "steps": steps[-1:]})
                executors = [n for n in where if n.startswith("rltf-executor")]
                asked = [x["n"] for x in result["scales"]]
                if steps and executors and not asked:  # grow past one executor node's room
                    result["scales"].append(scale(3, env))
                elif len(executors) >= 3 and asked == [3]:  # all three run: shrink it
                    result["scales"].append(scale(1, env))
            except Exception as err:  # noqa: BLE001 - kept for the test to report
                result["errors"].append(f"watch: {type(err).__name__}: {err}")
            done.wait(0.5)

    from tiny_models import SMALL_RUN

    args = argparse.Namespace(
        config=None, run_dir=str(run), max_steps=STEPS, max_minutes=None, resume=None,
        overrides=[*TOPOLOGY, *SMALL_RUN, "train.eval_every=100", "train.eval_val=false",
                   "learner.checkpoint_every=100", f"model.cache_dir={cache}"])
    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        result["rc"] = train_cmd.run(args)  # (its log goes to stderr, which the test keeps)
    finally:
        done.set()
        thread.join(timeout=300)
    result["summary"] = json.loads((run / "summary.json").read_text())
    # the executor nodes left idle are removed (idle_timeout_minutes=0.1): wait for it
    deadline = time.time() + 60
    while time.time() < deadline:
        result["nodes_after"] = nodes()
        if not [n for n in result["nodes_after"] if n["alive"] and n["resources"].get(
                "executor_node")]:
            break
        time.sleep(1)
    ray.shutdown()


if __name__ == "__main__":
    sys.exit(main())
