"""The zygote: a warm interpreter whose only work is forking one sandboxed child per program.

Forked by the fork-server's supervisor (`executor.supervisor`) once the process has entered its
isolation (`executor.sandbox`) and imported the harness and the modules programs commonly use.
It is PID 1 of a new PID namespace where the kernel allows, and it holds that warm interpreter
and does nothing but fork it: one child per program run, which it then waits for, and after
which it kills and reaps everything the program left running. Its loop is kept small on
purpose: after each fork every page a process writes costs it a copy, so the process that
forks should write as few as possible. It dies with the supervisor (PR_SET_PDEATHSIG).

A child starts in about a millisecond: it reads its request, arranges its descriptors, sets its
limits, drops privileges and runs the harness (`executor.harness`). The expected outputs never
reach the zygote or a child, so no child can read them from memory.

Every module imported here is in the memory each program is forked from, and each one makes
every fork dearer (page tables, mappings of its shared library); the socket is the C module's
own (no socket.py, selectors, array).
"""

from __future__ import annotations

import _signal
import _socket
import ctypes
import os
import signal
import struct
import sys

from executor import harness, sandbox
from executor.wire import read_exact, unpack

STATUS = struct.Struct(">i")  # the zygote's report of a run's end: the child's exit code
FIRST_FREE_FD = 5  # 0-4 are the child's stdin, stdout, stderr, record and dump channels
INLINE_MAX = 1 << 16  # requests up to this size travel inside the zygote's message
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
    pack, uid, pid_namespace = STATUS.pack, iso.uid, iso.pid_namespace
    flags = os.WEXITED | os.WNOWAIT
    devnull = os.open(os.devnull, os.O_RDWR)
    slots = range(FIRST_FREE_FD)
    while True:
        try:
            msg, fds = recv_fds(sock, FIRST_FREE_FD + 1, INLINE_MAX + 1)
        except OSError:
            os._exit(0)
        if not msg or len(fds) < FIRST_FREE_FD:
            os._exit(0)  # the supervisor is gone
        for target in slots:
            dup2(fds[target], target)
            close(fds[target])
        try:
            pid = _fast_fork()
        except OSError:
            pid = -1
        if pid == 0:
            _child(msg, fds[FIRST_FREE_FD:], uid)  # never returns
        for fd in fds[FIRST_FREE_FD:]:
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
            data = read_exact(extra[0], os.fstat(extra[0]).st_size)
        else:
            data = memoryview(msg)[1:]
        os.closerange(FIRST_FREE_FD, 65536)
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


def start_zygote(iso: sandbox.Isolation, keep_closed: tuple[int, ...]):
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
        workdir = run_dir(iso)
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



def run_dir(iso: sandbox.Isolation) -> str:
    """Every run's working directory (and HOME), emptied before each run."""
    return os.path.join(iso.work_root, "run")
