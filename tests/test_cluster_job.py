"""A real Ray cluster on loopback, driven the way users drive one: `ray start --head`, `ray job
submit` of a short tiny run, the dashboard's API listing the named actors, the Prometheus
endpoint serving rltf_ metrics, `rltf scale executors` resizing the pool 1 -> 2 -> 1 while the
job runs, job SUCCEEDED with its run folder written, `ray stop`."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
EXCLUDES = [".venv", "runs", ".cache", ".git", "**/__pycache__", ".pytest_cache"]
NAMES = ["rltf-sampler-0", "rltf-executor-0", "rltf-learner-rank0", "rltf-buffer",
         "rltf-driver", "rltf-weights"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 10.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read().decode()


def _run(*cmd: str, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, **kw)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    ports = {"gcs": _free_port(), "dash": _free_port(), "metrics": _free_port()}
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    start = _run(str(BIN / "ray"), "start", "--head", "--node-ip-address=127.0.0.1",
                 "--dashboard-host=127.0.0.1", f"--port={ports['gcs']}",
                 f"--dashboard-port={ports['dash']}", f"--metrics-export-port={ports['metrics']}",
                 "--num-cpus=4", "--include-dashboard=true", "--disable-usage-stats",
                 timeout=180, env=env)
    assert start.returncode == 0, start.stderr[-3000:]
    try:
        deadline = time.time() + 60
        while True:  # the dashboard answers a little after `ray start` returns
            try:
                _get(f"http://127.0.0.1:{ports['dash']}/api/version")
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(1)
        yield {**ports, "env": env}
    finally:
        _run(str(BIN / "ray"), "stop", "--force", timeout=120, env=env)


def _actor_names(dash: int) -> set[str]:
    body = json.loads(_get(f"http://127.0.0.1:{dash}/api/v0/actors?limit=1000"))
    rows = body.get("data", {}).get("result", {}).get("result", [])
    return {r.get("name") for r in rows if r.get("state") == "ALIVE"}


def _rltf_metrics(port: int) -> dict[str, float]:
    """rltf_ samples of the Prometheus text format, name{labels} -> value. Ray exports
    application metrics under its own `ray_` prefix, and counters with a `_total` suffix:
    rltf_samples_generated is served as ray_rltf_samples_generated_total."""
    out = {}
    for line in _get(f"http://127.0.0.1:{port}/metrics").splitlines():
        m = re.match(r"^ray_(rltf_\w+?)(_total)?(\{[^}]*\})?\s+([-+0-9.eE]+|NaN)", line)
        if m:
            out[m.group(1) + (m.group(3) or "")] = float(m.group(4))
    return out


def test_job_submit_dashboard_metrics_and_scaling(cluster, tmp_path):
    env = cluster["env"]
    dash = f"http://127.0.0.1:{cluster['dash']}"
    run = tmp_path / "run"
    runtime_env = json.dumps({"excludes": EXCLUDES,
                              "env_vars": {"PYTHONUNBUFFERED": "1"}})
    entry = (f"{sys.executable} -m cluster.cli train --run-dir {run} --max-steps 40 "
             f"model.warm_start_steps=20 data.synth_n=120 data.max_heldout=8 "
             f"model.cache_dir={tmp_path / 'cache'} train.eval_every=100 "
             f"learner.checkpoint_every=100")
    sub = _run(str(BIN / "ray"), "job", "submit", "--address", dash, "--no-wait",
               "--working-dir", str(ROOT), "--runtime-env-json", runtime_env,
               "--", *entry.split(), timeout=180, env=env)
    assert sub.returncode == 0, sub.stderr[-3000:]
    job_id = re.search(r"(raysubmit_\w+)", sub.stdout + sub.stderr).group(1)

    def status() -> str:  # the job REST API of the dashboard
        return json.loads(_get(f"{dash}/api/jobs/{job_id}"))["status"]

    def logs() -> str:
        return _run(str(BIN / "ray"), "job", "logs", "--address", dash, job_id, env=env).stdout

    deadline = time.time() + 420
    names: set[str] = set()
    while time.time() < deadline and status() in ("PENDING", "RUNNING"):
        names = _actor_names(cluster["dash"])
        if set(NAMES) <= names:
            break
        time.sleep(2)
    assert set(NAMES) <= names, (names, logs()[-3000:])

    gcs = f"127.0.0.1:{cluster['gcs']}"
    for n in (2, 1):
        scaled = _run(sys.executable, "-m", "cluster.cli", "scale", "executors", str(n),
                      "--address", gcs, timeout=180, env=env, cwd=ROOT)
        assert scaled.returncode == 0, scaled.stdout + scaled.stderr[-3000:]
        assert f"resized to {n}" in scaled.stdout

    found: dict[str, float] = {}
    while time.time() < deadline:  # metrics reach the exporter every few seconds
        found = _rltf_metrics(cluster["metrics"])
        nonzero = {k.split("{")[0] for k, v in found.items() if v > 0}
        if {"rltf_samples_generated", "rltf_programs_executed", "rltf_learner_steps"} <= nonzero:
            break
        time.sleep(3)
    nonzero = {k.split("{")[0] for k, v in found.items() if v > 0}
    assert {"rltf_samples_generated", "rltf_programs_executed",
            "rltf_learner_steps"} <= nonzero, sorted(found)[:40]

    while time.time() < deadline and status() in ("PENDING", "RUNNING"):
        time.sleep(2)
    text = logs()
    assert status() == "SUCCEEDED", text[-3000:]
    assert "executor pool 1 -> 2 actors (rltf scale)" in text
    assert "executor pool 2 -> 1 actors (rltf scale)" in text
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 40
    assert (run / "report.md").exists()
