"""A run on a cluster that Ray's own autoscaler grows and shrinks (its fake multi-node provider:
each node it launches is a raylet on this machine), inside private PID, network and mount
namespaces so that the provider's `ray stop --force` and its addresses reach nothing outside
(tests/autoscaled_cluster.py does the work and writes what happened; this test judges it).

The head offers nothing the run asks for. Start-up waits for the GPU-like node (sampler and
learner rank, `gpu_node`) and an executor node (`executor_node`), which the autoscaler adds
for the pending demands; the actors land only on their own node types; `rltf scale executors
3` grows the pool past one node's room, the autoscaler adds a second executor node, and
`rltf scale executors 1` shrinks it; the run finishes with every program accounted for, and
the autoscaler removes the executor nodes once they are idle."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# left out by default (pyproject's addopts) and so in CI, whose 20 minutes are spent: run it
# with `pytest -m autoscaler tests/test_cluster_autoscaler.py`
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.autoscaler]

HELPER = Path(__file__).resolve().parent / "autoscaled_cluster.py"
UNSHARE = ["unshare", "--pid", "--fork", "--kill-child", "--net", "--mount-proc", "--mount"]


def _no_namespaces() -> str | None:
    """Why private namespaces cannot be made here (None: they can)."""
    if os.geteuid() != 0:
        return "needs root for PID, network and mount namespaces"
    if not (shutil.which("unshare") and shutil.which("ip") and shutil.which("mount")):
        return "needs unshare, ip and mount"
    probe = subprocess.run([*UNSHARE, "ip", "link", "set", "lo", "up"], capture_output=True,
                           text=True)
    return f"unshare failed: {probe.stderr.strip()}" if probe.returncode else None


def _kind(resources: dict) -> str:
    return ("gpu" if resources.get("gpu_node") else
            "executor" if resources.get("executor_node") else "head")


@pytest.mark.timeout(900)
def test_ray_autoscaler_brings_the_nodes_a_run_and_rltf_scale_ask_for(tmp_path, tiny_cache):
    reason = _no_namespaces()
    if reason:
        pytest.skip(reason)
    out = tmp_path / "cluster"
    out.mkdir()
    with open(out / "output.log", "w") as fh:
        subprocess.run([*UNSHARE, "--", sys.executable, str(HELPER), str(out), str(tiny_cache)],
                       stdout=fh, stderr=subprocess.STDOUT, timeout=840)
    judge(out)


def judge(out: Path) -> None:
    """The checks, on what tests/autoscaled_cluster.py wrote to `out`."""
    log = (out / "output.log").read_text()
    res = json.loads((out / "result.json").read_text())
    assert not res["errors"] and res.get("rc") == 0, (res["errors"], log[-4000:])
    monitor = "".join(p.read_text() for p in (out / "tmp-ray").glob("session_*/logs/monitor.*"))

    # the head alone at first; the run waited while the autoscaler added the nodes it asked for
    assert [_kind(n["resources"]) for n in res["nodes_at_start"] if n["alive"]] == ["head"]
    # (Ray's default autoscaler does not report its node types: start-up says so and waits)
    assert "autoscaler does not report the node types" in log, log[-4000:]
    assert "start-up: waiting for" in log, log[-4000:]
    assert "Adding 1 node(s) of type gpu" in monitor
    assert "Adding 1 node(s) of type executors" in monitor
    kind_of = {n["id"]: _kind(n["resources"]) for p in res["polls"] for n in p["nodes"]
               if n["alive"]}  # (a removed node is listed without its resources)
    # every actor on the nodes its resources name, at every poll
    for poll in res["polls"]:
        for name, node in poll["where"].items():
            if name.startswith(("rltf-sampler", "rltf-learner")):
                assert kind_of[node] == "gpu", (name, poll)
            if name.startswith("rltf-executor"):
                assert kind_of[node] == "executor", (name, poll)

    def executors(poll):
        return [node for name, node in poll["where"].items() if name.startswith("rltf-executor")]

    # rltf scale executors 3: more than one executor node holds (2 executor_node each), so
    # the autoscaler added a second; then 1
    assert [(s["n"], s["rc"]) for s in res["scales"]] == [(3, 0), (1, 0)], res["scales"]
    grown = next(i for i, p in enumerate(res["polls"]) if len(executors(p)) == 3)
    assert len(set(executors(res["polls"][grown]))) == 2
    assert any(len(executors(p)) == 1 for p in res["polls"][grown:])
    # the run finished; no program lost or judged twice
    s = res["summary"]
    assert s["steps"] == 10 and s["stopped_by"] == "max_steps" and s["results_unexpected"] == 0
    assert s["programs_submitted"] == (s["programs_judged"] + s["programs_abandoned_by_restarts"]
                                       + s["programs_in_flight_at_end"]) > 0
    # idle executor nodes removed by the autoscaler
    assert "Removing" in monitor and not [n for n in res["nodes_after"]
                                          if n["alive"] and _kind(n["resources"]) == "executor"]
