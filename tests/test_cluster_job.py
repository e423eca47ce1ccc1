"""A real Ray cluster on loopback with token authentication on, driven with the README's
commands: `ray get-auth-token --generate`, `ray start --head` with 2 CPUs, `ray job submit` of
the embedded default (shortened), the dashboard's API listing the named actors (with the
token), the Prometheus endpoint serving rltf_ metrics (no token needed), `rltf scale
executors` resizing the pool 1 -> 2 -> 1 while the job runs, `ray job stop` ending it with a
checkpoint and a second job continuing it with `--resume`. Clients without the token, or with
a wrong one, get one line saying so; a topology the cluster cannot hold stops at once.

The cluster has its own HOME (so its token is not ~/.ray/auth_token) and its own --temp-dir,
and is stopped by PID (`tests/ray_head.py`): `ray stop` would stop every Ray on the machine."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from ray_head import RayHead
from tiny_models import SMALL_RUN

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# The README's runtime environment, as written there.
RUNTIME_ENV = ('{"excludes": [".venv", "runs", ".cache", ".git"], '
               '"env_vars": {"RAY_JOB_STOP_WAIT_TIME_S": "120"}}')
NAMES = ["rltf-sampler-0", "rltf-executor-0", "rltf-learner-rank0", "rltf-buffer",
         "rltf-driver", "rltf-weights"]
FAST = [*SMALL_RUN, "train.eval_every=100"]


def _run(*cmd: str, timeout: float = 180, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          **kw)


def _get(url: str, headers: dict | None = None, timeout: float = 10.0) -> str:
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return resp.read().decode()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS")}
    # README: `export RAY_AUTH_MODE=token` on every node and client, then the token is made
    # once on the head (here in this cluster's own HOME, never the user's ~/.ray/auth_token)
    # (DeepSpeed's compiled ops stay in the user's cache, not rebuilt in the new HOME)
    env.setdefault("TORCH_EXTENSIONS_DIR", str(Path.home() / ".cache" / "torch_extensions"))
    env.update(HOME=str(home), RAY_AUTH_MODE="token", PATH=f"{BIN}:{env['PATH']}")
    made = _run("ray", "get-auth-token", "--generate", env=env)
    assert made.returncode == 0, made.stderr[-2000:]
    assert (home / ".ray" / "auth_token").read_text().strip() == made.stdout.strip()
    logs = tmp_path_factory.mktemp("logs")
    head = RayHead(str(BIN / "ray"), env, num_cpus=2, log_path=logs / "head.log")
    try:
        # a worker node joins with the same token (README: `ray start --address=HEAD:6379`);
        # it offers no CPU, so the run still has the head's 2
        head.add_worker(0, logs / "worker.log")
        yield head
    finally:
        left = head.stop()
        assert not head.own_pids(), left


def _headers(env: dict) -> dict:
    from cluster.auth import auth_headers

    return auth_headers(env)


def test_clients_without_the_right_token_get_one_line(cluster):
    env = cluster.env
    no_mode = {k: v for k, v in env.items() if k != "RAY_AUTH_MODE"}
    wrong = {**env, "RAY_AUTH_TOKEN": "0" * 64}
    for e, says in ((no_mode, "requires its authentication token and this client sends none"),
                    (wrong, "refused the token from RAY_AUTH_TOKEN")):
        out = _run("rltf", "scale", "executors", "2", "--address", cluster.address, env=e)
        assert out.returncode == 2, out.stdout + out.stderr
        lines = [x for x in (out.stdout + out.stderr).splitlines() if x.strip()]
        assert len(lines) == 1 and says in lines[0], lines
        assert "ray get-auth-token" in lines[0]
    # the dashboard's REST API refuses requests without the token and takes them with it
    with pytest.raises(urllib.error.HTTPError) as err:
        _get(f"{cluster.url}/api/v0/actors?limit=10")
    assert err.value.code == 401
    assert json.loads(_get(f"{cluster.url}/api/v0/actors?limit=10", _headers(env)))
    # the worker node joined with the token
    deadline = time.time() + 120
    while time.time() < deadline:
        nodes = json.loads(_get(f"{cluster.url}/api/v0/nodes?limit=10", _headers(env)))
        alive = [n for n in nodes["data"]["result"]["result"] if n["state"] == "ALIVE"]
        if len(alive) == 2:
            break
        time.sleep(2)
    assert len(alive) == 2, nodes
    # the metrics endpoint does not ask for it (what Prometheus scrapes)
    assert "ray_" in _get(f"http://127.0.0.1:{cluster.metrics}/metrics")


def test_a_topology_the_cluster_cannot_hold_stops_before_any_actor(cluster, tmp_path):
    out = _run("rltf", "train", "--run-dir", str(tmp_path / "run"),
               f"cluster.address={cluster.address}", "learner.gpus_per_rank=1",
               "executor.resources={executor_node: 1}", "sampler.cpus_per_actor=4",
               f"model.cache_dir={tmp_path / 'cache'}", env=cluster.env, timeout=120)
    assert out.returncode == 2, out.stdout[-2000:] + out.stderr[-2000:]
    err = out.stderr
    assert "cannot hold the run" in err
    assert re.search(r"CPU: needs 5 \(1 sampler x 4 \[sampler.cpus_per_actor\]", err), err
    assert "GPU: needs 1" in err and "learner.gpus_per_rank" in err
    assert "executor_node: needs 1" in err and "executor.resources" in err
    assert not (tmp_path / "cache").exists()  # stopped before the warm start


def _actors(cluster) -> list[dict]:
    body = json.loads(_get(f"{cluster.url}/api/v0/actors?limit=1000", _headers(cluster.env)))
    return [r for r in body.get("data", {}).get("result", {}).get("result", [])
            if r.get("state") == "ALIVE"]


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


def _steps(run: Path) -> list[int]:
    path = run / "metrics.jsonl"
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()] \
        if path.exists() else []
    return [r["step"] for r in rows if "loss/total" in r]


class Job:
    def __init__(self, cluster, *train_args: str):
        self.cluster = cluster
        for _ in range(30):  # a node's job agent registers a little after the node
            sub = _run("ray", "job", "submit", "--address", cluster.url, "--no-wait",
                       "--working-dir", ".", "--runtime-env-json", RUNTIME_ENV,
                       "--", "rltf", "train", *train_args, env=cluster.env)
            if "No available agent to submit job" not in sub.stderr:
                break
            time.sleep(5)
        assert sub.returncode == 0, sub.stderr[-3000:]
        self.id = re.search(r"(raysubmit_\w+)", sub.stdout + sub.stderr).group(1)

    def status(self) -> str:
        return json.loads(_get(f"{self.cluster.url}/api/jobs/{self.id}",
                               _headers(self.cluster.env)))["status"]

    def logs(self) -> str:
        return _run("ray", "job", "logs", "--address", self.cluster.url, self.id,
                    env=self.cluster.env).stdout

    def wait(self, until, deadline: float) -> bool:
        while time.time() < deadline and self.status() in ("PENDING", "RUNNING"):
            if until():
                return True
            time.sleep(2)
        return until()


@pytest.mark.slow
@pytest.mark.timeout(1200)  # two jobs: 237 s at load 15-20 on 2 cores
def test_job_on_a_2_cpu_head_scaled_stopped_and_resumed(cluster, tmp_path, tiny_cache):
    run = tmp_path / "run"
    # long enough that scaling and `ray job stop` always find it running, even on a fast
    # machine; it is stopped after 5 steps and the resumed job ends 3 steps later
    args = ["--run-dir", str(run), "--max-steps", "500", f"model.cache_dir={tiny_cache}", *FAST]
    job = Job(cluster, *args)
    deadline = time.time() + 600
    names: set[str] = set()

    def all_up() -> bool:
        nonlocal names
        names = {a["name"] for a in _actors(cluster)}
        return set(NAMES) <= names

    assert job.wait(all_up, deadline), (names, job.logs()[-3000:])
    # the bookkeeping actors reserve no CPU: 3 x 0.5 CPU for sampler, executor and learner
    reserved = {a["name"]: a.get("required_resources", {}) for a in _actors(cluster)}
    for name in ("rltf-buffer", "rltf-weights", "rltf-driver"):
        assert not reserved[name].get("CPU"), reserved

    for n in (2, 1):  # the README's command, against the GCS port
        scaled = _run("rltf", "scale", "executors", str(n), "--address", cluster.address,
                      env=cluster.env)
        assert scaled.returncode == 0, scaled.stdout + scaled.stderr[-3000:]
        assert f"resized to {n}" in scaled.stdout
    # 3 executors would need 2.5 CPUs of 2: refused, with the reason
    refused = _run("rltf", "scale", "executors", "3", "--address", cluster.address,
                   env=cluster.env)
    assert refused.returncode == 1 and "CPU: needs 2.5" in refused.stdout, refused.stdout

    found: dict[str, float] = {}
    wanted = {"rltf_samples_generated", "rltf_programs_executed", "rltf_learner_steps"}

    def metrics_up() -> bool:
        nonlocal found
        found = _rltf_metrics(cluster.metrics)
        return wanted <= {k.split("{")[0] for k, v in found.items() if v > 0}

    assert job.wait(metrics_up, deadline), sorted(found)[:40]
    assert job.wait(lambda: len(_steps(run)) >= 5, deadline), job.logs()[-3000:]

    stop = _run("ray", "job", "stop", "--address", cluster.url, job.id, env=cluster.env,
                timeout=300)
    assert stop.returncode == 0, stop.stderr[-2000:]
    assert job.status() == "STOPPED"
    text = job.logs()
    assert "executor pool 1 -> 2 actors (rltf scale)" in text
    assert "executor pool 2 -> 1 actors (rltf scale)" in text
    assert "signal SIGTERM: finishing the current step" in text
    summary = json.loads((run / "summary.json").read_text())
    stopped_at = summary["steps"]
    assert summary["stopped_by"] == "signal SIGTERM" and 5 <= stopped_at < 500
    assert (run / "checkpoints" / "latest").read_text().strip() == f"step-{stopped_at:06d}"

    end = stopped_at + 3
    again = Job(cluster, "--resume", str(run), "--max-steps", str(end))
    again.wait(lambda: False, time.time() + 600)
    text = again.logs()
    assert again.status() == "SUCCEEDED", text[-3000:]
    assert f"resumed from {run / 'checkpoints' / f'step-{stopped_at:06d}'}" in text
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == end and summary["stopped_by"] == "max_steps"
    assert sorted(set(_steps(run))) == list(range(1, end + 1))
    assert (run / "report.md").exists()
