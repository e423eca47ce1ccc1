"""The fork-server: a small, pre-warmed pair of processes that runs each program in a fresh,
sandboxed child.

Started by an executor worker as `python -m executor.forkserver` (never forked from a Ray actor
or any large, threaded process). At start it enters its isolation (see `executor.sandbox`) and
imports the harness and the modules programs commonly use, then splits in two:

* the *zygote* (PID 1 of a new PID namespace where the kernel allows) holds that warm
  interpreter and does nothing but fork it: one child per program run, which it then waits
  for, and after which it kills and reaps everything the program left running. Its loop is
  kept small on purpose: after each fork every page a process writes costs it a copy, so the
  process that forks should write as few as possible.
* the *supervisor* (the process the worker started) serves the worker's requests, length-
  prefixed pickles on two pipes, one program at a time, in order (the worker may queue the
  next request while one runs). It never forks. It hands the zygote, over a Unix socket,
  each run's request and descriptors (standard input, the output, record and dump pipes)
  and gets back a pidfd of the child, with which it enforces wall-clock
  deadlines per test and per program, asks for a stack dump on timeout and kills. It drains
  and caps the output and returns raw observations; the worker judges them
  (`executor.judge`). The expected outputs never reach either process, so no child can read
  them from memory.

A child starts in about a millisecond: it reads its request, arranges its descriptors, sets
its limits, drops privileges and runs the harness (`executor.harness`).
"""

from __future__ import annotations

import _signal
import _socket
import ctypes
import errno
import json
import marshal
import os
import re
import signal
import stat
import struct
import sys
import time

from executor import harness, sandbox
from executor.programtext import compile_program  # noqa: F401 - also used by tests

# Every module imported at the top of this file is in the memory each program is forked from,
# and each one makes every fork dearer (page tables, mappings of its shared library). What only
# the supervisor needs (pickle, shutil, codeop, warnings, select) is imported where it is used,
# after the zygote exists; the zygote's socket is the C module's own (no socket.py, selectors,
# array).

_HDR = struct.Struct(">I")
_STATUS = struct.Struct(">i")
_SCAN = json.JSONDecoder().scan_once  # (text, index) -> (value, end)
# A complete frame line of the program in a faulthandler dump (" in " ends the line number).
_DUMP_LINE = re.compile(rb'File "<program>", line (\d+) in ')
# Imported before the zygote forks, so programs find them loaded: the names APPS-style programs
# expect (harness.PRELUDE_MODULES) and json. Others (dataclasses, hashlib...) cost each program
# that imports them a few milliseconds, and would cost every fork a little if loaded here.
_WARM_MODULES = harness.PRELUDE_MODULES + ("json",)
_GRACE_S = 1.0  # longest wait for a faulthandler dump or for pipes to drain
_QUIET_S = 0.005  # how long output and records may wait in their pipes before being read
_CHUNK = 1 << 16  # one read from a pipe
_ZYGOTE_WAIT_S = 30.0  # longest wait for the zygote to report a finished run
_FIRST_FREE_FD = 5  # 0-4 are the child's stdin, stdout, stderr, record and dump channels
_INLINE_MAX = 1 << 16  # requests up to this size travel inside the zygote's message
_libc = ctypes.PyDLL(None, use_errno=True)  # PyDLL: the GIL stays held across the call
_libc.fork.restype = ctypes.c_int


def _fast_fork() -> int:
    """fork(2) without Python's at-fork hooks (about half the cost of os.fork() here).

    Safe because the zygote is single-threaded and forks only between requests, when it holds
    no locks; the child starts from a consistent interpreter and never returns to the zygote's
    loop. Programs that fork themselves use os.fork(), with all its hooks."""
    pid = _libc.fork()
    if pid < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"fork: {os.strerror(err)}")
    return pid


def _read_exact(fd: int, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return bytes(buf)


def pack(obj) -> bytes:
    """Values between trusted processes (worker, supervisor, child request): marshal, which is
    quick and runs no code when read, where every value allows it (code objects included);
    pickle otherwise, with code objects inside it carried as marshal."""
    try:
        return b"M" + marshal.dumps(obj)
    except ValueError:
        import io
        import pickle
        import types

        class _Pickler(pickle.Pickler):
            def reducer_override(self, value):
                if type(value) is types.CodeType:
                    return marshal.loads, (marshal.dumps(value),)
                return NotImplemented

        buf = io.BytesIO()
        _Pickler(buf, pickle.HIGHEST_PROTOCOL).dump(obj)
        return b"P" + buf.getvalue()


def unpack(data):
    data = memoryview(data)
    if data[:1] == b"M":
        return marshal.loads(data[1:])
    import pickle

    return pickle.loads(data[1:])


def read_msg(fd: int):
    (n,) = _HDR.unpack(_read_exact(fd, _HDR.size))
    return unpack(_read_exact(fd, n))


def encode_msg(obj) -> bytes:
    data = pack(obj)
    return _HDR.pack(len(data)) + data


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_msg(fd: int, obj) -> None:
    write_all(fd, encode_msg(obj))


class _Frames:
    """Splits the record channel's bytes into JSON frames; garbage ends the stream."""

    def __init__(self, limit: int):
        self.buf = bytearray()
        self.records: list = []
        self.bad = False
        self.size = 0
        self.limit = limit

    def feed(self, data: bytes) -> None:
        self.size += len(data)
        if self.bad or self.size > self.limit:
            self.bad = True
            return
        buf = self.buf
        buf += data
        pos, end = 0, len(buf)
        while end - pos >= 4:
            (n,) = _HDR.unpack_from(buf, pos)
            if n > self.limit:
                self.bad = True
                break
            if end - pos - 4 < n:
                break
            try:  # the C scanner itself: json.loads adds layers of Python per record
                text = buf[pos + 4:pos + 4 + n].decode("utf-8")
                rec, stop = _SCAN(text, 0)
            except (ValueError, StopIteration, RecursionError):  # garbage, or nested too deep
                self.bad = True
                break
            if stop != len(text):
                self.bad = True
                break
            pos += 4 + n
            if type(rec) is dict:
                self.records.append(rec)
        del buf[:pos]


# -- the zygote ----------------------------------------------------------------------------------
_RIGHTS = (_socket.SOL_SOCKET, _socket.SCM_RIGHTS)


def send_fds(sock, data: bytes, fds: list[int]) -> None:
    """One message with descriptors attached (what socket.send_fds does)."""
    sock.sendmsg([data], [(*_RIGHTS, struct.pack(f"{len(fds)}i", *fds))])


def recv_fds(sock, maxfds: int, size: int = 16) -> tuple[bytes, list[int]]:
    """One message and the descriptors attached to it (what socket.recv_fds does)."""
    data, ancillary, _, _ = sock.recvmsg(size, _socket.CMSG_LEN(maxfds * 4))
    fds: list[int] = []
    for level, kind, payload in ancillary:
        if (level, kind) == _RIGHTS:
            usable = len(payload) - len(payload) % 4
            fds.extend(struct.unpack(f"{usable // 4}i", payload[:usable]))
    return data, fds


class ZygoteDied(RuntimeError):
    """The zygote is gone: the supervisor exits, and the worker starts a new fork-server."""


def _zygote(sock, iso: sandbox.Isolation) -> None:
    """The zygote's loop; never returns.

    Each message carries the child's request (inline, or as a sixth descriptor when large) and
    five descriptors: its standard input, stdout, stderr, record and dump pipes. The zygote puts
    those on descriptors 0-4 itself, so the child inherits them in place, forks the child,
    answers with a pidfd of it, waits for it to end, kills and reaps everything it left
    running, and answers with its exit code (negative: the signal that killed it)."""
    send = sock.send
    close, dup2, pidfd_open, waitid = os.close, os.dup2, os.pidfd_open, os.waitid
    pack, uid, pid_namespace = _STATUS.pack, iso.uid, iso.pid_namespace
    flags = os.WEXITED | os.WNOWAIT
    devnull = os.open(os.devnull, os.O_RDWR)
    slots = range(_FIRST_FREE_FD)
    while True:
        try:
            msg, fds = recv_fds(sock, _FIRST_FREE_FD + 1, _INLINE_MAX + 1)
        except OSError:
            os._exit(0)
        if not msg or len(fds) < _FIRST_FREE_FD:
            os._exit(0)  # the supervisor is gone
        for target in slots:
            dup2(fds[target], target)
            close(fds[target])
        try:
            pid = _fast_fork()
        except OSError:
            pid = -1
        if pid == 0:
            _child(msg, fds[_FIRST_FREE_FD:], uid)  # never returns
        for fd in fds[_FIRST_FREE_FD:]:
            close(fd)
        if pid < 0:
            reply = b"e"
        else:
            pidfd = pidfd_open(pid)
            send_fds(sock, b"p", [pidfd])
            close(pidfd)
            # Wait without reaping, so the child's PID (and process group) cannot be reused
            # while its descendants are killed.
            info = waitid(os.P_PID, pid, flags)
            code = info.si_status if info.si_code == os.CLD_EXITED else -info.si_status
            _kill_rest(pid, pid_namespace)
            reply = pack(code)
        # Only now (fewer pages written while the child shares them): the pipes' write ends
        # must not stay open here, as the supervisor reads them to their end.
        for target in slots:
            dup2(devnull, target)
        send(reply)


def _kill_rest(pid: int, pid_namespace: bool) -> None:
    """Kill whatever the program left running and reap every child of the zygote."""
    if pid_namespace:
        # The zygote is PID 1 here: kill(-1) reaches every other process of the namespace,
        # i.e. whatever the program left running, daemons included.
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            pass
        while True:
            try:
                os.waitpid(-1, 0)
            except ChildProcessError:
                return
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    while True:  # the child and every process of its group (orphans come to the zygote)
        try:
            os.waitpid(-pid, 0)
        except ChildProcessError:
            break
    while True:  # orphans that left the group (a subreaper adopts them) and have ended
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                return
        except ChildProcessError:
            return


def _child(msg: bytes, extra: list[int], uid: int | None) -> None:
    """In the forked child, whose descriptors 0-4 are in place: request, working directory,
    limits, privileges, then the harness. Never returns."""
    try:
        os.setsid()
        if extra:  # the request came as a memfd (too large to travel inline), read from 0
            data = _read_exact(extra[0], os.fstat(extra[0]).st_size)
        else:
            data = memoryview(msg)[1:]
        os.closerange(_FIRST_FREE_FD, 65536)
        req = unpack(data)
        os.chdir(req["workdir"])
        sandbox.apply_rlimits(req["rlimits"])
        if uid is not None:
            sandbox.drop_privileges(uid)
        harness.child_main(req["code"], req, req["start"])
        try:
            sys.stdout.flush()
        except BaseException:
            pass
        os._exit(0)
    finally:
        os._exit(70)


def _start_zygote(iso: sandbox.Isolation, keep_closed: tuple[int, ...]):
    """Fork the zygote from this warm interpreter; (its PID, the supervisor's socket end)."""
    import gc

    mine, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
    gc.collect()
    gc.freeze()  # children never scan (and so never copy) the interpreter's objects
    pid = os.fork()
    if pid:
        theirs.close()
        return pid, mine
    log_fd = os.dup(2)  # descriptor 2 becomes each child's stderr; errors go here
    try:
        mine.close()
        for fd in keep_closed:
            os.close(fd)
        try:
            sandbox.prctl(sandbox.PR_SET_PDEATHSIG, int(signal.SIGKILL))  # die with the supervisor
            if not iso.pid_namespace:
                sandbox.prctl(sandbox.PR_SET_CHILD_SUBREAPER, 1)  # adopt what programs leave
        except OSError:
            pass
        # What every child starts with, set once here instead of in each child.
        _signal.signal(signal.SIGPIPE, _signal.SIG_DFL)
        _signal.signal(signal.SIGTERM, _signal.SIG_DFL)
        workdir = Server.workdir_of(iso)
        os.environ.clear()
        os.environ.update({"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": workdir,
                           "TMPDIR": workdir, "LANG": "C.UTF-8", "PYTHONIOENCODING": "utf-8"})
        harness.install_dump_handler()
        if iso.cpu is not None:
            # The zygote and every child it forks run on this one CPU: a child starts on the
            # CPU whose caches hold the pages it shares with the zygote, and no core idles
            # while a fork hands over to its child on another.
            try:
                os.sched_setaffinity(0, {iso.cpu})
            except OSError:
                pass  # a CPU taken away since: run anywhere
        _zygote(theirs, iso)
    except BaseException:
        import traceback

        os.dup2(log_fd, 2)
        traceback.print_exc()  # reaches the worker's log through the inherited stderr
    finally:
        os._exit(70)


# -- the supervisor ------------------------------------------------------------------------------
class Server:
    def __init__(self, iso: sandbox.Isolation, zygote, in_fd: int | None = None):
        """`in_fd`: the worker's request pipe, read ahead while a child runs (see `prepare`)."""
        import select  # here, not at the top: the zygote never needs it

        self._select = select.select
        self.iso = iso
        self.zygote = zygote
        self.in_fd = in_fd
        self.workdir = self.workdir_of(iso)
        # Private tmpfs mounts (see sandbox._lock_down_filesystem); elsewhere they are the host's.
        self._scratch = ("/tmp", "/dev/shm") if "read-only fs" in iso.features else ()
        self.runs = 0
        self._devnull = os.open(os.devnull, os.O_RDONLY)
        self._rlimits: dict[tuple, tuple] = {}
        self.inbox: list[dict] = []  # prepared requests read while a child ran
        self.closed = False  # the worker closed its end

    @staticmethod
    def workdir_of(iso: sandbox.Isolation) -> str:
        """Every run's working directory (and HOME), emptied before each run."""
        return os.path.join(iso.work_root, "run")

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

    def _attempt(self, child_req: dict, start: int, stdin_data: str | None) -> dict:
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
            inline = len(data) < _INLINE_MAX
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
        if len(data) != _STATUS.size:
            raise ZygoteDied("the zygote did not report the end of a run")
        return _STATUS.unpack(data)[0]

    def _supervise(self, pidfd: int, req: dict, pipes: dict, t0: float) -> dict:
        select = self._select
        limit, cap = req["time_limit_s"], req["output_limit"]
        program_deadline = req["deadline"]
        begun = t0  # when the running test began (the child stamps each "begin" record)
        frames = _Frames(limit=max(cap, 1 << 20) * 4)
        out = bytearray()
        out_size = 0
        dump = bytearray()
        reason = None
        streams = {pipes["out"][0]: "out", pipes["err"][0]: "err", pipes["rec"][0]: "rec",
                   pipes["dump"][0]: "dump"}
        seen = 0

        def take(fd: int) -> bool:
            """Read one chunk; True if the stream may have more waiting."""
            nonlocal out_size, reason, seen, begun
            data = os.read(fd, _CHUNK)
            kind = streams[fd]
            if not data:
                del streams[fd]
            elif kind == "rec":
                frames.feed(data)
                for rec in frames.records[seen:]:
                    t = rec.get("t")
                    if t == "begin":
                        ts = rec.get("ts")
                    elif t == "end" and "nb" in rec:  # and the next test began
                        ts = rec.get("nb")
                    else:
                        continue
                    # A forged stamp can only move the deadline within [last begin, now].
                    now = time.monotonic()
                    ok = isinstance(ts, float) and ts == ts  # not NaN
                    begun = min(max(ts, begun), now) if ok else now
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
                deadline = min(begun + limit, program_deadline)
                if now >= deadline:
                    drain_now()  # a test may have begun since the last read
                    deadline = min(begun + limit, program_deadline)
                    if now >= deadline:
                        reason = reason or "timeout"
                        break
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
        return {"records": frames.records, "garbled": frames.bad, "reason": reason,
                "stdout": bytes(out), "dump_line": int(m.group(1)) if m else None,
                "elapsed": time.monotonic() - t0, "status": status}

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
    def prepare(self, req: dict) -> dict:
        """What can be done for a request before its turn: the program compiled (a syntax
        error is its whole answer) and the child's request built. Run while another
        program's child runs, when the worker has queued this request behind it."""
        item: dict = {"req": req}
        if req.get("op") != "run":
            return item
        try:
            item["code"], item["syntax"] = compile_program(req["program"], req["format"])
            if item["syntax"] is not None:
                return item
            child_req = {key: req.get(key) for key in (
                "format", "fn_name", "entry_point", "setup", "tests", "uses_random",
                "time_limit_s", "output_limit")}
            child_req["inputs"] = req["inputs"] if req["format"] == "call" else []
            child_req["code"] = item["code"]
            child_req["rlimits"] = self._rlimit_plan(req["limits"])
            # Assert tests come compiled by the worker, as one marshalled blob.
            child_req["codes"] = req.get("probe_codes")
            item["child_req"] = child_req
        except Exception as exc:  # answered as this request's internal error, in its turn
            item["error"] = exc
        return item

    def run_prepared(self, item: dict) -> dict:
        req = item["req"]
        if "error" in item:
            raise item["error"]
        t0 = time.monotonic()
        syntax = item["syntax"]
        resp: dict = {"syntax": syntax, "import_error": None, "setup_error": None, "tests": [],
                      "isolation": self.iso.describe(), "tier": self.iso.tier}
        n = len(req["inputs"]) if req["format"] != "assert" else len(req["tests"])
        tests: list[dict] = [{"status": "not_run"} for _ in range(n)]
        resp["tests"] = tests
        if syntax is not None:
            resp["duration_s"] = time.monotonic() - t0
            return resp
        req["deadline"] = t0 + req["budget_s"]
        child_req = item["child_req"]
        child_req["deadline"] = req["deadline"]
        k = 0
        while k < n and time.monotonic() < req["deadline"]:
            stdin_data = req["inputs"][k] if req["format"] == "stdio" else None
            att = self._attempt(dict(child_req), k, stdin_data)
            k = self._absorb(att, req, tests, k, resp)
        resp["duration_s"] = time.monotonic() - t0
        return resp

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

    def _absorb(self, att: dict, req: dict, tests: list, start: int, resp: dict) -> int:
        """Fold one attempt's records into per-test observations; return the next test."""
        current = None
        began: dict[int, float] = {}
        stdio = req["format"] == "stdio"
        for rec in att["records"]:
            t = rec.get("t")
            if t in ("import_error", "setup_error"):
                resp[t] = rec.get("err")
                for i in range(start, len(tests)):
                    tests[i] = {"status": "error", "err": rec.get("err")}
                return len(tests)
            if t == "setup":  # the setup's calls into the program, as the first run made them
                if "setup_events" not in resp:
                    resp["setup_events"] = rec.get("events")
                continue
            k = rec.get("k")
            if not isinstance(k, int) or not (start <= k < len(tests)):
                continue
            if t == "begin":
                current = k
                began.setdefault(k, 0.0)
            elif t == "end" and tests[k]["status"] == "not_run":
                obs: dict = {"status": "error" if rec.get("err") else
                             "unjudgeable" if "u" in rec else "ok"}
                for key in ("v", "events", "err", "u"):
                    if key in rec:
                        obs[key] = rec[key]
                if stdio:
                    obs["stdout"] = att["stdout"].decode("utf-8", "replace")
                tests[k] = obs
                if current == k:
                    current = None
                if "nb" in rec and k + 1 < len(tests):
                    current = k + 1
        if att["reason"] == "output_limit" and stdio:
            tests[start] = {"status": "output_limit"}
            return start + 1
        if stdio:
            if tests[start]["status"] == "not_run":
                tests[start] = self._abnormal(att)
            return start + 1
        ready = any(r.get("t") == "ready" for r in att["records"])
        if not ready:  # died or hung while loading the program
            obs = self._abnormal(att)
            resp["import_error"] = obs.get("err") or {"type": obs["status"], "line": None,
                                                      "msg": "the program did not load"}
            for i in range(start, len(tests)):
                tests[i] = dict(obs)
            return len(tests)
        if current is not None:
            tests[current] = self._abnormal(att)
            return current + 1
        done = [i for i in range(start, len(tests)) if tests[i]["status"] == "not_run"]
        if done and not any(r.get("t") == "done" for r in att["records"]):
            # Ended between tests without saying done: the next test cannot be blamed.
            return done[0] + 1 if att["reason"] else done[0]
        return len(tests)

    def _abnormal(self, att: dict) -> dict:
        if att["reason"] == "timeout":
            return {"status": "timeout", "err": {"type": "Timeout", "line": att["dump_line"],
                                                 "msg": "time limit exceeded"}}
        if att["reason"] == "output_limit":
            return {"status": "output_limit", "err": {"type": "OutputLimit", "line": None,
                                                      "msg": "output limit exceeded"}}
        return {"status": "crash", "err": {"type": "Crash", "line": None,
                                           "msg": "the program ended without a result"}}


def _move_high(fd: int) -> int:
    import fcntl

    high = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return high


def main() -> None:
    """Arguments: IN_FD OUT_FD MODE UID_BASE [pin|nopin] (see `executor.worker`)."""
    in_fd, out_fd = _move_high(int(sys.argv[1])), _move_high(int(sys.argv[2]))
    mode = sys.argv[3] if len(sys.argv) > 3 else "auto"
    uid_base = int(sys.argv[4]) if len(sys.argv) > 4 else 61000
    pin = (sys.argv[5] if len(sys.argv) > 5 else "pin") == "pin"
    # 0-4 stay taken (0, 1, 3 and 4 by /dev/null, 2 by the worker's stderr pipe), so every
    # descriptor made from here on is >= 5 and the zygote's dup2 onto 0-4 never clobbers another.
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 3, 4):
        if fd != devnull:
            os.dup2(devnull, fd)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        project_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        cpu, _cpu_lock = sandbox.claim_cpu() if pin else (None, None)  # the lock lives on
        iso = sandbox.setup_isolation(mode, uid_base, exclude=(project_root, os.getcwd()))
        iso.cpu = cpu
        # The zygote, forked below, becomes PID 1 of a new PID namespace.
        iso.pid_namespace = mode != "minimal" and sandbox.unshare_pid_namespace()
        if iso.pid_namespace:
            iso.features.append("pid namespace")
        import importlib

        for name in _WARM_MODULES:
            try:
                importlib.import_module(name)
            except ImportError:
                pass
        harness.warm_preludes()
        harness.warm_up()
        zygote_pid, zygote = _start_zygote(iso, keep_closed=(in_fd, out_fd))
    except Exception as exc:  # report to the worker, which raises it
        write_msg(out_fd, {"ok": False, "error": f"{type(exc).__name__}: {exc}"})
        return
    write_msg(out_fd, {"ok": True, "isolation": iso.describe(), "tier": iso.tier,
                       "notes": iso.notes, "pid": os.getpid(), "uid": iso.uid,
                       "cpu": iso.cpu})
    server = Server(iso, zygote, in_fd)
    try:
        while True:
            if server.inbox:
                item = server.inbox.pop(0)
            elif server.closed:
                break
            else:
                try:
                    item = server.prepare(read_msg(in_fd))
                except EOFError:
                    break
            if item["req"].get("op") == "run":
                try:
                    resp = server.run_prepared(item)
                except ZygoteDied:
                    break  # the worker sees this process end and starts a new fork-server
                except Exception as exc:  # keep serving; the worker reports the failure
                    resp = {"internal_error": f"{type(exc).__name__}: {exc}"}
            else:
                resp = {"pong": True}
            write_msg(out_fd, resp)
    finally:
        try:
            os.kill(zygote_pid, signal.SIGKILL)
            os.waitpid(zygote_pid, 0)
        except OSError:
            pass
        import shutil

        shutil.rmtree(iso.work_root, ignore_errors=True)


if __name__ == "__main__":
    main()
