"""The fork-server: a small, pre-warmed pair of processes that runs each program in a fresh,
sandboxed child.

Started by an executor worker as `python -m executor.forkserver` (never forked from a Ray actor
or any large, threaded process). At start it enters its isolation (see `executor.sandbox`) and
imports the harness and the modules programs commonly use, then splits in two:

* the *zygote* (`executor.zygote`; PID 1 of a new PID namespace where the kernel allows) holds
  that warm interpreter and does nothing but fork it: one child per program run, which it then
  waits for, and after which it kills and reaps everything the program left running.
* the *supervisor* (`executor.supervisor`; the process the worker started) serves the
  worker's requests, one program at a time, in order. It never forks. It enforces CPU-time and
  wall-clock limits per test and a wall-clock budget per program through a pidfd of each
  child, asks for a stack dump on timeout and kills, drains and caps the output, and returns
  raw observations; the worker judges them (`executor.judge`). The expected outputs never reach either process, so no
  child can read them from memory.

What travels between them, and how, is the wire format (`executor.wire`: framing;
`executor.messages`: the typed request and observation records). A child starts in about a
millisecond: it reads its request, arranges its descriptors, sets its limits, drops privileges
and runs the harness (`executor.harness`).
"""

from __future__ import annotations

import os
import signal
import sys

from executor import harness, sandbox
from executor.messages import Hello, RunObservation
from executor.supervisor import Server
from executor.wire import read_msg, write_msg
from executor.zygote import ZygoteDied, start_zygote

# Every module imported before the zygote forks is in the memory each program is forked from,
# and each one makes every fork dearer (page tables, mappings of its shared library). The
# project's own modules must all be imported here, before the sandbox hides the project's
# folder; what only the supervisor needs of the standard library (select, pickle, shutil) is
# imported where it is used, after the zygote exists. Imported before it forks, so
# programs find them loaded: the names APPS-style programs expect (harness.PRELUDE_MODULES)
# and json. Others (dataclasses, hashlib...) cost each program that imports them a few
# milliseconds, and would cost every fork a little if loaded here.
_WARM_MODULES = harness.PRELUDE_MODULES + ("json",)


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
        zygote_pid, zygote = start_zygote(iso, keep_closed=(in_fd, out_fd))
    except Exception as exc:  # report to the worker, which raises it
        write_msg(out_fd, Hello(ok=False, error=f"{type(exc).__name__}: {exc}").to_wire())
        return
    write_msg(out_fd, Hello(ok=True, isolation=iso.describe(), tier=iso.tier, notes=iso.notes,
                            pid=os.getpid(), uid=iso.uid, cpu=iso.cpu).to_wire())
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
            if item.msg.get("op") == "run":
                try:
                    resp = server.run_prepared(item).to_wire()
                except ZygoteDied:
                    break  # the worker sees this process end and starts a new fork-server
                except Exception as exc:  # keep serving; the worker reports the failure
                    resp = RunObservation(
                        internal_error=f"{type(exc).__name__}: {exc}").to_wire()
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
