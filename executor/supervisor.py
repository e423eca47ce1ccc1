"""The fork-server's supervisor: serves the worker's requests, one program at a time.

The supervisor is the process the worker started (`python -m executor.forkserver`). It serves
the worker's requests (`executor.messages`, length-prefixed on two pipes, see
`executor.wire`), one program at a time, in order; the worker may queue the next request while
one runs, and the supervisor compiles it meanwhile (`prepare`). It never forks. It hands the
zygote (`executor.zygote`), over a Unix socket, each run's request and descriptors (standard
input, the output, record and dump pipes) and gets back a pidfd of the child, with which it
enforces the limits per test (CPU time of the child's process, read from the kernel's clock
of it, and wall-clock time, a multiple of it) and the program's wall-clock budget, asks for a
stack dump on timeout and kills. It drains and caps the output, reads the child's records as untrusted input
(`wire.RecordFrames`), and returns raw observations (`RunObservation`); the worker judges them
(`executor.judge`). The expected outputs never reach it, so no child can read them from
memory. Before each run it empties the run's working directory and the sandbox's private /tmp
and /dev/shm, so that no program finds another's files.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import stat
import time

from executor import sandbox
from executor.messages import RunObservation, RunRequest, TestObservation
from executor.observations import Attempt, absorb
from executor.programtext import compile_program
from executor.wire import RecordFrames, pack, read_msg, write_all
from executor.zygote import INLINE_MAX, STATUS, ZygoteDied, recv_fds, run_dir, send_fds

# A complete frame line of the program in a faulthandler dump (" in " ends the line number).
_DUMP_LINE = re.compile(rb'File "<program>", line (\d+) in ')
_GRACE_S = 1.0  # longest wait for a faulthandler dump or for pipes to drain
_QUIET_S = 0.005  # how long output and records may wait in their pipes before being read
_CHUNK = 1 << 16  # one read from a pipe
_ZYGOTE_WAIT_S = 30.0  # longest wait for the zygote to report a finished run


class Prepared:
    """A request read from the worker, with what could be done for it before its turn."""

    __slots__ = ("msg", "req", "syntax", "child_req", "error")

    def __init__(self, msg: dict):
        self.msg = msg  # as it came (a request other than "run" is answered {"pong": True})
        self.req: RunRequest | None = None
        self.syntax: dict | None = None  # the program's syntax error: its whole answer
        self.child_req: dict | None = None  # RunRequest.child_request
        self.error: Exception | None = None  # answered as this request's internal error


class Server:
    """Serves one worker's requests; see the module's docstring."""

    def __init__(self, iso: sandbox.Isolation, zygote, in_fd: int | None = None):
        """`in_fd`: the worker's request pipe, read ahead while a child runs (see `prepare`)."""
        import select  # here, not at the top: the zygote never needs it

        self._select = select.select
        self.iso = iso
        self.zygote = zygote
        self.in_fd = in_fd
        self.workdir = run_dir(iso)
        # Private tmpfs mounts (see sandbox._lock_down_filesystem); elsewhere they are the host's.
        self._scratch = ("/tmp", "/dev/shm") if "read-only fs" in iso.features else ()
        self.runs = 0
        self._devnull = os.open(os.devnull, os.O_RDONLY)
        self._rlimits: dict[tuple, tuple] = {}
        self.inbox: list[Prepared] = []  # requests read (and prepared) while a child ran
        self.closed = False  # the worker closed its end

    def _rlimit_plan(self, limits: dict) -> tuple:
        key = tuple(sorted(limits.items()))
        plan = self._rlimits.get(key)
        if plan is None:
            plan = self._rlimits[key] = sandbox.rlimit_plan(
                sandbox.Limits(**limits), confine_nproc=self.iso.uid is not None)
        return plan

    # -- one child -------------------------------------------------------------------------
    def _clear_scratch(self) -> None:
        """Remove what earlier programs left in the sandbox's private /tmp and /dev/shm (tmpfs
        mounts of this fork-server alone, in the tiers with a file-system namespace), so that no
        program finds another's files there."""
        import shutil

        for top in self._scratch:
            try:
                names = os.listdir(top)
            except OSError:
                continue
            for name in names:
                path = os.path.join(top, name)
                if path == self.iso.work_root:
                    continue
                try:
                    if stat.S_ISDIR(os.lstat(path).st_mode):
                        shutil.rmtree(path, ignore_errors=True)
                    else:
                        os.unlink(path)
                except OSError:
                    pass

    def _fresh_workdir(self) -> str:
        """The run's working directory, empty and the program's own: the last run's, when the
        program left it as it found it (the common case), made anew otherwise."""
        self._clear_scratch()
        workdir = self.workdir
        owner = self.iso.uid if self.iso.uid is not None else os.getuid()
        try:
            st = os.lstat(workdir)
            if (stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700
                    and st.st_uid == owner and not os.listdir(workdir)):
                return workdir
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
            if os.path.lexists(workdir):  # left unremovable: set it aside
                os.rename(workdir, os.path.join(self.iso.work_root, f"stale{self.runs}"))
        except FileNotFoundError:
            pass
        os.mkdir(workdir, 0o700)
        if self.iso.uid is not None:
            os.chown(workdir, self.iso.uid, self.iso.uid)
        return workdir

    @staticmethod
    def _memfd(name: str, data: bytes) -> int:
        fd = os.memfd_create(name)
        write_all(fd, data)
        os.lseek(fd, 0, os.SEEK_SET)
        return fd

    def _attempt(self, child_req: dict, start: int, stdin_data: str | None) -> Attempt:
        """Run the child from test `start` until it ends, is killed, or runs out of time."""
        self.runs += 1
        child_req["start"] = start
        child_req["workdir"] = self._fresh_workdir()
        data = pack(child_req)
        req_fds: list[int] = []
        stdin_fd = (self._devnull if stdin_data is None
                    else self._memfd("rltf-stdin", stdin_data.encode("utf-8", "replace")))
        pipes = {name: os.pipe() for name in ("out", "err", "rec", "dump")}
        t0 = time.monotonic()
        fds = [stdin_fd, pipes["out"][1], pipes["err"][1], pipes["rec"][1], pipes["dump"][1]]
        try:
            inline = len(data) < INLINE_MAX
            if inline:
                try:
                    send_fds(self.zygote, b"r" + data, fds)
                except OSError as err:  # too large for one message on this kernel
                    if err.errno != errno.EMSGSIZE:
                        raise
                    inline = False
            if not inline:
                req_fds.append(self._memfd("rltf-request", data))
                send_fds(self.zygote, b"m", fds + req_fds)
        except OSError as err:
            raise ZygoteDied(f"the zygote is gone: {err}") from None
        finally:
            for _, w in pipes.values():
                os.close(w)
            for fd in req_fds:
                os.close(fd)
            if stdin_fd != self._devnull:
                os.close(stdin_fd)
        try:
            try:
                msg, fds = recv_fds(self.zygote, 1)
            except OSError as err:
                raise ZygoteDied(f"the zygote is gone: {err}") from None
            if not msg:
                raise ZygoteDied("the zygote is gone")
            if msg != b"p" or len(fds) != 1:
                for fd in fds:
                    os.close(fd)
                raise RuntimeError("the zygote could not fork a child")
            return self._supervise(fds[0], child_req, pipes, t0)
        finally:
            for r, _ in pipes.values():
                os.close(r)

    def _zygote_report(self) -> int:
        """The child's exit code, sent once it and everything it started are dead and reaped."""
        ready, _, _ = self._select([self.zygote], [], [], _ZYGOTE_WAIT_S)
        try:
            data = self.zygote.recv(16) if ready else b""
        except OSError:
            data = b""
        if len(data) != STATUS.size:
            raise ZygoteDied("the zygote did not report the end of a run")
        return STATUS.unpack(data)[0]

    def _supervise(self, pidfd: int, req: dict, pipes: dict, t0: float) -> Attempt:
        select = self._select
        limit, cap = req["time_limit_s"], req["output_limit"]
        program_deadline = req["deadline"]
        begun = t0  # when the running test began (the child stamps each "begin" record)
        cpu_clock = sandbox.cpu_clock(pidfd)  # the child's CPU time (None: wall-clock only)
        # Where the child's CPU time cannot be read, the limit holds for wall-clock time.
        wall_limit = (req.get("wall_limit_s") or limit) if cpu_clock is not None else limit
        cpu_begun = 0.0  # the child's CPU time when the running test began
        frames = RecordFrames(limit=max(cap, 1 << 20) * 4)
        out = bytearray()
        out_size = 0
        dump = bytearray()
        reason = None
        streams = {pipes["out"][0]: "out", pipes["err"][0]: "err", pipes["rec"][0]: "rec",
                   pipes["dump"][0]: "dump"}
        seen = 0

        def take(fd: int) -> bool:
            """Read one chunk; True if the stream may have more waiting."""
            nonlocal out_size, reason, seen, begun, cpu_begun
            data = os.read(fd, _CHUNK)
            kind = streams[fd]
            if not data:
                del streams[fd]
            elif kind == "rec":
                frames.feed(data)
                cpu_now = None
                for rec in frames.records[seen:]:
                    t = rec.get("t")
                    if t == "begin":
                        ts, tc = rec.get("ts"), rec.get("cpu")
                    elif t == "end" and "nb" in rec:  # and the next test began
                        ts, tc = rec.get("nb"), rec.get("nbc")
                    else:
                        continue
                    # A forged stamp can only move the deadline within [last begin, now].
                    begun = _clamp(ts, begun, time.monotonic())
                    if cpu_clock is not None:
                        if cpu_now is None:
                            cpu_now = sandbox.cpu_time(cpu_clock, cpu_begun)
                        cpu_begun = _clamp(tc, cpu_begun, cpu_now)
                seen = len(frames.records)
            elif kind == "dump":
                dump.extend(data[: 1 << 16])
            else:
                out_size += len(data)
                if kind == "out" and out_size <= cap:
                    out.extend(data)
                if out_size > cap:
                    reason = "output_limit"
            return len(data) == _CHUNK

        def cpu_spent() -> float:
            """CPU time of the running test so far (0 once the child has ended: its exit, not
            a clock read after it, decides)."""
            if cpu_clock is None:
                return 0.0
            spent = sandbox.cpu_time(cpu_clock, cpu_begun) - cpu_begun
            if spent >= limit and select([pidfd], [], [], 0)[0]:
                return 0.0
            return spent

        def drain_now() -> None:
            """Read what is waiting now (at most 64 chunks: a flood must not hold us here)."""
            for _ in range(64):
                if not streams or reason is not None:
                    return
                ready, _, _ = select(list(streams), [], [], 0)
                if not ready or not any([take(fd) for fd in ready]):
                    return

        try:
            exited = False
            quiet_until = 0.0
            while not exited and reason is None:
                now = time.monotonic()
                deadline = min(begun + wall_limit, program_deadline)
                spent = cpu_spent()
                if now >= deadline or spent >= limit:
                    drain_now()  # a test may have begun since the last read
                    deadline = min(begun + wall_limit, program_deadline)
                    spent = cpu_spent()
                    if now >= deadline or spent >= limit:
                        reason = reason or "timeout"
                        break
                # The CPU limit cannot be reached before `limit - spent` more seconds.
                deadline = min(deadline, now + limit - spent)
                # Output and records are read in batches: after a small read, the streams
                # rest for _QUIET_S (the pipes hold what comes meanwhile), so a program that
                # runs its tests in a few milliseconds wakes this process about twice, not
                # once per test. The child's exit and the deadlines are always watched.
                lookahead = self._lookahead_fd()
                watch = [pidfd, *lookahead] + (list(streams) if now >= quiet_until else [])
                wake = deadline if now >= quiet_until else min(deadline, quiet_until)
                ready, _, _ = select(watch, [], [], max(0.0, wake - now))
                more = False
                took = False
                for fd in ready:
                    if fd == pidfd:
                        exited = True
                    elif lookahead and fd == lookahead[0]:
                        self._take_request()  # the next program, prepared meanwhile
                    else:
                        more = take(fd) or more
                        took = True
                if took and not exited and not more:
                    quiet_until = time.monotonic() + _QUIET_S
            if reason == "timeout":
                self._dump_traceback(pidfd, pipes["dump"][0], dump)
            if not exited:
                try:
                    signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        finally:
            os.close(pidfd)
        status = self._zygote_report()
        # Everything the program started is dead now: read what is left in the pipes.
        if self.iso.pid_namespace:  # no writer is left, so reads end at EOF without waiting
            for fd in list(streams):
                while fd in streams:
                    take(fd)
        drain_until = time.monotonic() + _GRACE_S
        while streams:
            timeout = drain_until - time.monotonic()
            if timeout <= 0:
                break  # a process that escaped the kill holds a pipe open (minimal tier)
            ready, _, _ = select(list(streams), [], [], timeout)
            for fd in ready:
                take(fd)
        m = _DUMP_LINE.search(dump)
        return Attempt(records=frames.records, garbled=frames.bad, reason=reason,
                       stdout=bytes(out), dump_line=int(m.group(1)) if m else None,
                       elapsed=time.monotonic() - t0, status=status)

    def _dump_traceback(self, pidfd: int, dump_fd: int, dump: bytearray) -> None:
        """Ask the child's faulthandler where it is (works inside C loops too)."""
        select = self._select
        try:
            signal.pidfd_send_signal(pidfd, signal.SIGUSR1)
        except ProcessLookupError:
            return
        end = time.monotonic() + _GRACE_S
        while time.monotonic() < end:
            ready, _, _ = select([dump_fd], [], [], end - time.monotonic())
            if not ready:
                break
            data = os.read(dump_fd, 1 << 16)
            if not data:
                break
            dump += data
            if _DUMP_LINE.search(dump):  # the program's innermost frame, line number whole
                break

    # -- one program -----------------------------------------------------------------------
    def prepare(self, msg: dict) -> Prepared:
        """What can be done for a request before its turn: the program compiled (a syntax
        error is its whole answer) and the child's request built. Run while another
        program's child runs, when the worker has queued this request behind it."""
        item = Prepared(msg)
        if msg.get("op") != "run":
            return item
        try:
            req = item.req = RunRequest.from_wire(msg)
            code, item.syntax = compile_program(req.program, req.format)
            if item.syntax is not None:
                return item
            item.child_req = req.child_request(code, self._rlimit_plan(req.limits))
        except Exception as exc:  # answered as this request's internal error, in its turn
            item.error = exc
        return item

    def run_prepared(self, item: Prepared) -> RunObservation:
        req = item.req
        if item.error is not None:
            raise item.error
        t0 = time.monotonic()
        n = req.n_tests
        obs = RunObservation(tests=[TestObservation() for _ in range(n)], syntax=item.syntax,
                             isolation=self.iso.describe(), tier=self.iso.tier)
        if item.syntax is not None:
            obs.duration_s = time.monotonic() - t0
            return obs
        deadline = t0 + req.budget_s
        child_req = item.child_req
        child_req["deadline"] = deadline
        stdio = req.format == "stdio"
        k = 0
        while k < n and time.monotonic() < deadline:
            stdin_data = req.inputs[k] if stdio else None
            att = self._attempt(dict(child_req), k, stdin_data)
            k = absorb(att, stdio, obs, k)
        obs.duration_s = time.monotonic() - t0
        return obs

    # -- requests queued behind the running one --------------------------------------------
    def _lookahead_fd(self) -> list[int]:
        fd = self.in_fd
        return [fd] if fd is not None and not self.inbox and not self.closed else []

    def _take_request(self) -> None:
        try:
            req = read_msg(self.in_fd)
        except EOFError:
            self.closed = True
            return
        self.inbox.append(self.prepare(req))


def _clamp(stamp, low: float, high: float) -> float:
    """A time the child stamped, kept within [low, high] (what this process knows)."""
    if isinstance(stamp, float) and stamp == stamp:  # not NaN
        return min(max(stamp, low), high)
    return high

