"""The fork-server: a small, pre-warmed process that forks one sandboxed child per program run.

Started by an executor worker as `python -m executor.forkserver` (never forked from a Ray actor
or any large, threaded process). At start it enters its isolation (see `executor.sandbox`) and
imports the harness and the modules programs commonly use, so a child starts in about a
millisecond. It then serves requests on fds 3 (in) and 4 (out) as length-prefixed pickles, one
program at a time.

For each program it supervises children: wall-clock deadlines per test and per program, a
kill of the whole PID namespace (or process group), reaping of every descendant, and drained,
capped output. It returns raw observations; the worker judges them (`executor.judge`). The
expected outputs never reach this process, so no child can read them from memory.
"""

from __future__ import annotations

import codeop
import ctypes
import fcntl
import os
import pickle
import re
import select
import shutil
import signal
import struct
import sys
import time
import warnings

from executor import harness, sandbox

_HDR = struct.Struct(">I")
_DUMP_LINE = re.compile(r'File "<program>", line (\d+)')
_WARM_MODULES = harness.PRELUDE_MODULES + ("json", "copy", "string", "dataclasses", "enum",
                                          "array", "hashlib", "textwrap", "unicodedata")
_GRACE_S = 1.0  # longest wait for a faulthandler dump or for pipes to drain
_libc = ctypes.PyDLL(None, use_errno=True)  # PyDLL: the GIL stays held across the call
_libc.fork.restype = ctypes.c_int


def _fast_fork() -> int:
    """fork(2) without Python's at-fork hooks (about half the cost of os.fork() here).

    Safe because the fork-server is single-threaded and forks only between requests, when it
    holds no locks; the child starts from a consistent interpreter and never returns to the
    server loop. Programs that fork themselves use os.fork(), with all its hooks."""
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


def read_msg(fd: int):
    (n,) = _HDR.unpack(_read_exact(fd, _HDR.size))
    return pickle.loads(_read_exact(fd, n))


def write_msg(fd: int, obj) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_HDR.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


def compile_program(program: str):
    """(code, None) or (None, syntax error record with `truncated`)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return compile(program, harness.PROGRAM_FILE, "exec", dont_inherit=True), None
        except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError) as exc:
            line = getattr(exc, "lineno", None)
            msg = getattr(exc, "msg", None) or str(exc)
            truncated = False
            if isinstance(exc, SyntaxError):
                try:
                    truncated = codeop.compile_command(program, "<program>", "exec") is None
                except (SyntaxError, ValueError, OverflowError, RecursionError, MemoryError):
                    truncated = False
            return None, {"type": type(exc).__name__ if isinstance(exc, SyntaxError)
                          else "SyntaxError", "line": line, "msg": str(msg)[:400],
                          "truncated": truncated}


class _Frames:
    """Splits the record channel's bytes into JSON frames; garbage ends the stream."""

    def __init__(self, limit: int):
        self.buf = bytearray()
        self.records: list = []
        self.bad = False
        self.size = 0
        self.limit = limit

    def feed(self, data: bytes) -> None:
        import json

        self.size += len(data)
        if self.bad or self.size > self.limit:
            self.bad = True
            return
        self.buf += data
        while len(self.buf) >= 4:
            (n,) = _HDR.unpack(self.buf[:4])
            if n > self.limit:
                self.bad = True
                return
            if len(self.buf) < 4 + n:
                return
            raw = bytes(self.buf[4:4 + n])
            del self.buf[:4 + n]
            try:
                rec = json.loads(raw)
            except ValueError:
                self.bad = True
                return
            if isinstance(rec, dict):
                self.records.append(rec)


class Server:
    def __init__(self, iso: sandbox.Isolation):
        self.iso = iso
        self.runs = 0
        self._codes: dict[str, object] = {}  # compiled probe test code, by source

    def _compiled(self, src: str, filename: str):
        code = self._codes.get(src)
        if code is None:
            if len(self._codes) > 4096:
                self._codes.clear()
            code = self._codes[src] = compile(src, filename, "exec")
        return code

    # -- one child -------------------------------------------------------------------------
    def _spawn(self, code, req: dict, start: int, stdin_path: str | None, workdir: str,
               pipes: dict) -> int:
        """Fork the child in its own session; return its PID."""
        pid = _fast_fork()
        if pid == 0:
            try:
                os.setsid()
                self._child(code, req, start, stdin_path, workdir, pipes)
            finally:
                os._exit(70)
        return pid

    def _child(self, code, req, start, stdin_path, workdir, pipes) -> None:
        limits = sandbox.Limits(**req["limits"])
        stdin_fd = os.open(stdin_path or "/dev/null", os.O_RDONLY)
        sources = [stdin_fd, pipes["out"][1], pipes["err"][1], pipes["rec"][1],
                   pipes["dump"][1]]
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 256) for fd in sources]  # no clobbering
        for target, fd in zip((0, 1, 2, harness.REC_FD, harness.DUMP_FD), high):
            os.dup2(fd, target)
        os.closerange(harness.DUMP_FD + 1, 65536)
        os.chdir(workdir)
        os.environ.clear()
        os.environ.update({"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": workdir,
                           "TMPDIR": workdir, "LANG": "C.UTF-8", "PYTHONIOENCODING": "utf-8"})
        sandbox.apply_limits(limits, confine_nproc=self.iso.uid is not None)
        if self.iso.uid is not None:
            sandbox.drop_privileges(self.iso.uid)
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        harness.child_main(code, req, start)
        try:
            sys.stdout.flush()
        except BaseException:
            pass
        os._exit(0)

    def _kill(self, pid: int) -> None:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def _kill_all(self, pid: int) -> None:
        """Kill the child and everything it started, then reap them all."""
        if self.iso.pid_namespace:
            # This process is PID 1 here: kill(-1) reaches every other process of the
            # namespace, i.e. whatever the program left running, daemons included.
            try:
                os.kill(-1, signal.SIGKILL)
            except ProcessLookupError:
                pass
            while True:
                try:
                    os.waitpid(-1, 0)
                except ChildProcessError:
                    return
                except InterruptedError:
                    continue
        for target in (lambda: os.killpg(pid, signal.SIGKILL),
                       lambda: os.kill(pid, signal.SIGKILL)):
            try:
                target()
            except (ProcessLookupError, PermissionError):
                pass
        self._reap_orphans()

    def _attempt(self, code, req: dict, start: int, stdin_data: str | None) -> dict:
        """Run the child from test `start` until it ends, is killed, or runs out of time."""
        workdir = os.path.join(self.iso.work_root, f"run{self.runs}")
        self.runs += 1
        os.mkdir(workdir, 0o700)
        if self.iso.uid is not None:
            os.chown(workdir, self.iso.uid, self.iso.uid)
        stdin_path = None
        if stdin_data is not None:
            stdin_path = os.path.join(self.iso.work_root, f"in{self.runs}")
            with open(stdin_path, "w", encoding="utf-8") as fh:
                fh.write(stdin_data)
            os.chmod(stdin_path, 0o644)
        pipes = {name: os.pipe() for name in ("out", "err", "rec", "dump")}
        t0 = time.monotonic()
        try:
            pid = self._spawn(code, req, start, stdin_path, workdir, pipes)
        finally:
            for r, w in pipes.values():
                os.close(w)
        try:
            return self._supervise(pid, req, pipes, t0, start)
        finally:
            for r, _ in pipes.values():
                os.close(r)
            shutil.rmtree(workdir, ignore_errors=True)
            if stdin_path:
                os.unlink(stdin_path)

    def _supervise(self, pid: int, req: dict, pipes: dict, t0: float, start: int) -> dict:
        limit, cap = req["time_limit_s"], req["output_limit"]
        program_deadline = req["deadline"]
        test_deadline = t0 + limit
        frames = _Frames(limit=max(cap, 1 << 20) * 4)
        out = bytearray()
        out_size = 0
        dump = bytearray()
        reason = None
        streams = {pipes["out"][0]: "out", pipes["err"][0]: "err", pipes["rec"][0]: "rec",
                   pipes["dump"][0]: "dump"}
        pidfd = os.pidfd_open(pid)
        exited = False
        drain_until = None
        seen = 0
        wait_status = None
        try:
            while streams or not exited:
                now = time.monotonic()
                if drain_until is not None and now > drain_until:
                    break
                deadline = min(test_deadline, program_deadline)
                if not exited and now >= deadline:
                    reason = "timeout"
                    break
                wait = [*streams] + ([] if exited else [pidfd])
                if not wait:
                    break
                timeout = max(0.0, deadline - now) if not exited else _GRACE_S
                ready, _, _ = select.select(wait, [], [], timeout)
                if exited and not ready:
                    break  # descendants hold pipes open; they are killed below
                for fd in ready:
                    if fd == pidfd:
                        exited = True
                        drain_until = time.monotonic() + 1.0
                        continue
                    data = os.read(fd, 1 << 16)
                    kind = streams[fd]
                    if not data:
                        del streams[fd]
                        continue
                    if kind == "rec":
                        frames.feed(data)
                        for rec in frames.records[seen:]:
                            if rec.get("t") == "begin":
                                test_deadline = time.monotonic() + limit
                        seen = len(frames.records)
                    elif kind == "dump":
                        dump += data[: 1 << 16]
                    else:
                        out_size += len(data)
                        if kind == "out" and out_size <= cap:
                            out += data
                        if out_size > cap:
                            reason = "output_limit"
                if reason:
                    break
            if reason == "timeout":
                self._dump_traceback(pid, pipes["dump"][0], dump)
        finally:
            self._kill(pid)
            try:
                _, wait_status = os.waitpid(pid, 0)
            except ChildProcessError:
                pass
            self._kill_all(pid)
            os.close(pidfd)
        status = os.waitstatus_to_exitcode(wait_status) if wait_status is not None else None
        m = _DUMP_LINE.search(dump.decode("utf-8", "replace"))
        return {"records": frames.records, "garbled": frames.bad, "reason": reason,
                "stdout": bytes(out), "dump_line": int(m.group(1)) if m else None,
                "elapsed": time.monotonic() - t0, "status": status}

    def _dump_traceback(self, pid: int, dump_fd: int, dump: bytearray) -> None:
        """Ask the child's faulthandler where it is (works inside C loops too)."""
        try:
            os.kill(pid, signal.SIGUSR1)
        except ProcessLookupError:
            return
        end = time.monotonic() + _GRACE_S
        while time.monotonic() < end:
            ready, _, _ = select.select([dump_fd], [], [], end - time.monotonic())
            if not ready:
                break
            data = os.read(dump_fd, 1 << 16)
            if not data:
                break
            dump += data
            if b"<program>" in dump:
                break

    def _reap_orphans(self) -> None:
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return

    # -- one program -----------------------------------------------------------------------
    def run(self, req: dict) -> dict:
        t0 = time.monotonic()
        code, syntax = compile_program(req["program"])
        resp: dict = {"syntax": syntax, "import_error": None, "setup_error": None, "tests": [],
                      "isolation": self.iso.describe(), "tier": self.iso.tier}
        n = len(req["inputs"]) if req["format"] != "assert" else len(req["tests"])
        tests: list[dict] = [{"status": "not_run"} for _ in range(n)]
        resp["tests"] = tests
        if syntax is not None:
            resp["duration_s"] = time.monotonic() - t0
            return resp
        req["deadline"] = t0 + req["budget_s"]
        if req["format"] == "assert":  # test code is trusted: compile it here, once
            try:
                codes = {"setup": self._compiled(req["setup"], "<setup>")}
                for i, src in enumerate(req["tests"]):
                    codes[i] = self._compiled(src, "<tests>")
                req["codes"] = codes
            except SyntaxError:
                req["codes"] = {}
        k = 0
        while k < n and time.monotonic() < req["deadline"]:
            stdin_data = req["inputs"][k] if req["format"] == "stdio" else None
            att = self._attempt(code, req, k, stdin_data)
            k = self._absorb(att, req, tests, k, resp)
        resp["duration_s"] = time.monotonic() - t0
        return resp

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
            k = rec.get("k")
            if not isinstance(k, int) or not (start <= k < len(tests)):
                continue
            if t == "begin":
                current = k
                began.setdefault(k, 0.0)
            elif t == "end" and tests[k]["status"] == "not_run":
                obs: dict = {"status": "error" if rec.get("err") else "ok"}
                for key in ("v", "events", "err"):
                    if key in rec:
                        obs[key] = rec[key]
                if stdio:
                    obs["stdout"] = att["stdout"].decode("utf-8", "replace")
                tests[k] = obs
                if current == k:
                    current = None
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


def main() -> None:
    """Arguments: IN_FD OUT_FD MODE UID_BASE (see `executor.worker`)."""
    in_fd, out_fd = int(sys.argv[1]), int(sys.argv[2])
    mode = sys.argv[3] if len(sys.argv) > 3 else "auto"
    uid_base = int(sys.argv[4]) if len(sys.argv) > 4 else 61000
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        project_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        iso = sandbox.setup_isolation(mode, uid_base, exclude=(project_root, os.getcwd()))
    except Exception as exc:  # report to the worker, which raises it
        write_msg(out_fd, {"ok": False, "error": f"{type(exc).__name__}: {exc}"})
        return
    iso.pid_namespace = mode != "minimal" and sandbox.enter_pid_namespace()
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
    import gc

    gc.collect()
    gc.freeze()  # children never scan (and so never copy) the server's objects
    write_msg(out_fd, {"ok": True, "isolation": iso.describe(), "tier": iso.tier,
                       "notes": iso.notes, "pid": os.getpid(), "uid": iso.uid})
    server = Server(iso)
    while True:
        try:
            req = read_msg(in_fd)
        except EOFError:
            break
        if req.get("op") == "run":
            try:
                resp = server.run(req)
            except Exception as exc:  # keep serving; the worker reports the failure
                resp = {"internal_error": f"{type(exc).__name__}: {exc}"}
        else:
            resp = {"pong": True}
        write_msg(out_fd, resp)
    shutil.rmtree(server.iso.work_root, ignore_errors=True)


if __name__ == "__main__":
    main()
