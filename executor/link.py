"""The worker's end of a fork-server: the process, its two pipes, its hello.

    server = ForkServer("auto", uid_base=61000)   # `python -m executor.forkserver`, started
    server.send(encode_msg(RunRequest(...).to_wire()))
    observation = server.receive(timeout_s)       # RunObservation, answers in request order

The fork-server is started as a fresh interpreter (never forked from this process, which may
be a large, threaded Ray actor), with a clean environment, its own session, and only the two
pipes passed to it. It answers requests in order; the worker may queue the next one in the
request pipe while one runs (`pipe_capacity` says how much fits). A fork-server that exits or
stops answering raises ForkServerDied; the worker (`executor.worker`) starts a new one.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
from pathlib import Path

from executor.messages import Hello, RunObservation
from executor.wire import read_msg, write_all

_PKG_ROOT = str(Path(__file__).resolve().parent.parent)


class ForkServerDied(RuntimeError):
    """The fork-server exited, or did not answer in time."""


_PIPE_SIZE = 1 << 20  # requests up to this size can wait in the pipe behind a running one


def _widen(fd: int) -> int:
    """Grow a pipe to _PIPE_SIZE where allowed; its capacity."""
    import fcntl

    try:
        return fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
    except OSError:
        return fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ)


class ForkServer:
    """A running `python -m executor.forkserver` and the pipes to it."""

    def __init__(self, isolation: str, uid_base: int, pin_cpu: bool = True,
                 start_timeout_s: float = 60.0, wait: bool = True):
        """Start the fork-server; with `wait`, wait until it is ready (else call `ready`)."""
        to_srv_r, self._to_srv = os.pipe()
        self._from_srv, from_srv_w = os.pipe()
        self.pipe_capacity = _widen(self._to_srv)
        _widen(self._from_srv)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": _PKG_ROOT,
               "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "executor.forkserver", str(to_srv_r), str(from_srv_w),
             isolation, str(uid_base), "pin" if pin_cpu else "nopin"],
            pass_fds=(to_srv_r, from_srv_w), env=env, cwd=_PKG_ROOT, close_fds=True,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            start_new_session=True)
        os.close(to_srv_r)
        os.close(from_srv_w)
        self._start_timeout_s = start_timeout_s
        # Until the hello comes: requests may already be queued in the pipe meanwhile.
        self._starting = True
        self.isolation, self.tier, self.notes = "starting", "starting", []
        self.uid: int | None = None
        self.cpu: int | None = None
        if wait:
            self.ready()

    def ready(self) -> None:
        """Wait for the fork-server's hello (once); raises RuntimeError if it could not
        start."""
        if not self._starting:
            return
        self._starting = False
        hello = Hello.from_wire(self._read(self._start_timeout_s))
        if not hello.ok:
            self.close()
            raise RuntimeError(f"sandbox could not start: {hello.error}")
        self.isolation = hello.isolation
        self.tier = hello.tier
        self.notes = hello.notes
        self.uid = hello.uid
        self.cpu = hello.cpu  # the CPU its programs run on (None: any)

    def receive(self, timeout_s: float) -> RunObservation | None:
        """The answer to the oldest unanswered request. While the fork-server starts, its
        hello comes first: then None when no answer is waiting behind it yet."""
        if self._starting:
            self.ready()
            readable, _, _ = select.select([self._from_srv], [], [], 0)
            if not readable:
                return None
        return RunObservation.from_wire(self._read(timeout_s))

    def _read(self, timeout_s: float) -> dict:
        readable, _, _ = select.select([self._from_srv], [], [], timeout_s)
        if not readable:
            raise ForkServerDied(f"fork-server did not answer within {timeout_s:.0f}s")
        try:
            return read_msg(self._from_srv)
        except (EOFError, OSError) as err:
            tail = b""
            if self.proc.stderr is not None and self.proc.poll() is not None:
                tail = self.proc.stderr.read()[-2000:]
            raise ForkServerDied(f"fork-server exited ({err}); {tail.decode(errors='replace')}")

    def send(self, msg: bytes) -> None:
        """Queue one encoded request; the fork-server answers requests in order."""
        try:
            write_all(self._to_srv, msg)
        except OSError as err:
            raise ForkServerDied(f"fork-server is gone: {err}") from None

    def fileno(self) -> int:
        """Readable when an answer arrives (or the fork-server ends)."""
        return self._from_srv

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        """Idempotent: a descriptor closed twice could be another's by then."""
        fds, self._to_srv, self._from_srv = (self._to_srv, self._from_srv), -1, -1
        for fd in fds:
            if fd < 0:
                continue
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stderr is not None:
            self.proc.stderr.close()
