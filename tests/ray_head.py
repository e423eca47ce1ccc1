"""A Ray head for tests that stops only its own processes.

`ray stop` (Ray 2.60 has no per-cluster option) stops every Ray process of the machine, other
clusters included. So the head runs as `ray start --head --block` in a session of its own and
with its own --temp-dir: SIGTERM to that process drains the node and stops every process it
started; whatever is left of the session, or still points at this cluster's GCS port (a job's
driver runs in a session of its own), is then killed by PID. Nothing else is touched.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RayHead:
    def __init__(self, ray_bin: str, env: dict, num_cpus: int, log_path: Path,
                 extra: tuple[str, ...] = ()):
        self.env = env
        self.log_path = log_path
        self.workers: list = []
        self.temp_dirs: list[str] = []
        # Ray gives a starting node 30 s to register with its GCS and then gives up (the head
        # exits): a busy machine can miss that, so a head that does is started again
        for attempt in range(3):
            self._start(ray_bin, num_cpus, extra)
            if self._started():
                return
            self.stop()
            if attempt == 2 or "timed out during startup" not in log_path.read_text():
                raise RuntimeError(f"ray start failed: {log_path.read_text()[-3000:]}")

    def _start(self, ray_bin: str, num_cpus: int, extra: tuple[str, ...]) -> None:
        self.gcs, self.dash, self.metrics = free_port(), free_port(), free_port()
        # short: Ray's unix sockets live under it (108 characters at most)
        self.temp_dir = tempfile.mkdtemp(prefix="rltf-ray-", dir="/tmp")
        self.cmd = [ray_bin, "start", "--head", "--node-ip-address=127.0.0.1",
                    "--dashboard-host=127.0.0.1", f"--port={self.gcs}",
                    f"--dashboard-port={self.dash}", f"--metrics-export-port={self.metrics}",
                    f"--num-cpus={num_cpus}", "--disable-usage-stats",
                    f"--temp-dir={self.temp_dir}", *self.own_ports(),
                    f"--ray-client-server-port={free_port()}", "--block", *extra]
        self._log = open(self.log_path, "w")
        self.temp_dirs = [self.temp_dir]
        self.proc = subprocess.Popen(self.cmd, env={**self.env, "PYTHONUNBUFFERED": "1"},
                                     stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def _started(self) -> bool:
        """True once `ray start` says the node runs (its raylet registered) and the dashboard
        answers; False if `ray start` exited or two minutes passed."""
        deadline = time.time() + 120
        while time.time() < deadline and self.proc.poll() is None:
            if "Ray runtime started" in self.log_path.read_text():
                try:
                    urllib.request.urlopen(f"{self.url}/api/gcs_healthz", timeout=5).read()
                    return True
                except (OSError, urllib.error.URLError):
                    pass
            time.sleep(1)
        return False

    def add_worker(self, num_cpus: int, log_path: Path) -> None:
        """`ray start --address=HEAD:PORT` (a worker node on this machine), in a session of its
        own and stopped with the head. It gets a --temp-dir of its own: two nodes sharing one
        would share the runtime_resources folder too, and a node installing a job's
        working_dir removes and unpacks it again under the feet of a driver running in it."""
        log = open(log_path, "w")
        temp_dir = tempfile.mkdtemp(prefix="rltf-ray-", dir="/tmp")
        self.temp_dirs.append(temp_dir)
        proc = subprocess.Popen(
            [self.cmd[0], "start", f"--address={self.address}", "--node-ip-address=127.0.0.1",
             f"--num-cpus={num_cpus}", "--disable-usage-stats", f"--temp-dir={temp_dir}",
             *self.own_ports(), "--block"],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.workers.append((proc, log))

    @staticmethod
    def own_ports() -> list[str]:
        """Ports Ray would otherwise take at fixed defaults on every node: a second node on
        this machine, or another developer's cluster, holding the dashboard agent's 52365
        leaves this node without a job agent ("No available agent to submit job")."""
        return [f"--dashboard-agent-listen-port={free_port()}"]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.dash}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs}"

    def own_pids(self) -> list[int]:
        """Live processes of this head: its session, and those whose RAY_ADDRESS names its
        GCS port (job drivers)."""
        out = []
        sessions = {self.proc.pid, *(p.pid for p, _ in self.workers)}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if fields[0] == "Z":
                    continue
                if int(fields[3]) in sessions:  # session id
                    out.append(int(entry.name))
                    continue
                env = (entry / "environ").read_bytes().split(b"\0")
                if any(e.startswith(b"RAY_ADDRESS=") and e.endswith(f":{self.gcs}".encode())
                       for e in env):
                    out.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
        return out

    def stop(self) -> list[int]:
        """Stop this head and everything it started; returns the PIDs that had to be killed."""
        for proc in [p for p, _ in self.workers] + [self.proc]:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        killed = []
        deadline = time.time() + 30
        while time.time() < deadline:
            left = self.own_pids()
            if not left:
                break
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                except ProcessLookupError:
                    pass
            time.sleep(0.5)
        self._log.close()
        for _, log in self.workers:
            log.close()
        for temp_dir in self.temp_dirs:
            shutil.rmtree(temp_dir, ignore_errors=True)
        return killed


@contextmanager
def own_token(folder: Path):
    """Token authentication on, with a token of its own (never ~/.ray/auth_token), for a Ray
    instance started in this process (`ray.init()`, `ray.cluster_utils.Cluster`); the
    previous settings come back afterwards."""
    from ray._raylet import AuthenticationTokenLoader, Config

    keys = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")
    saved = {k: os.environ.get(k) for k in keys}
    path = Path(folder) / "auth_token"
    path.write_text(secrets.token_hex(32))
    os.environ.pop("RAY_AUTH_TOKEN", None)
    os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(path))
    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()
    try:
        yield path
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()


def own_temp_dir() -> str:
    """A --temp-dir of its own, so that /tmp/ray (other clusters' sessions and the pointer to
    the latest one) is left alone; short, because Ray's unix sockets live under it."""
    return tempfile.mkdtemp(prefix="rltf-ray-", dir="/tmp")


def pids_of(name: str) -> list[int]:
    """PIDs of the live actors named `name`, or `name.<n>` (a replacement that could not
    have the name yet), as Ray reports them."""
    from ray._private import state

    return [a["Pid"] for a in state.actors().values() if a.get("State") == "ALIVE"
            and (a.get("Name") == name or a.get("Name", "").startswith(name + "."))]


def kill_processes_of(temp_dir: str) -> list[int]:
    """SIGKILL the processes whose command line names `temp_dir` (a Ray instance's own
    --temp-dir: its GCS, raylets and agents), e.g. after a node failed to start."""
    killed = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if temp_dir.encode() in (entry / "cmdline").read_bytes():
                os.kill(int(entry.name), signal.SIGKILL)
                killed.append(int(entry.name))
        except (OSError, ProcessLookupError):
            continue
    return killed
