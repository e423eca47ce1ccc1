"""Run a function in the sandbox on given inputs and record what it returned (no verdict).

    with Worker(cfg) as worker:
        obs = record_outputs(worker, source, "fn", [((3, [1, 2]), {}), (("x",), {"k": 1})])
        obs[0].status, obs[0].value, obs[0].effects      # "ok", 5, ()

This is how `rltf gen-tests` learns the outputs of the original function from generated
inputs. It uses the worker's ordinary `call`-format request (`Worker.observe`): the program
runs in the same sandbox, with the same limits, as any program under test; only inputs cross
into it, and values come back through `executor.serialize`, so only plain values return.

The function is called through a small wrapper appended to the program, which also watches,
inside the sandbox, for side effects during the call: output to stdout or stderr, and audit
events (`sys.addaudithook`) for writing or reading files (reads of Python modules by the
import system excepted), processes, sockets, changes of directory or environment; on request
it also records which program lines ran (`sys.settrace`). A generator or built-in iterator is
drained inside the watched call and marked `iterator=True`. The wrapper and its reports run in
the sandbox, so they are evidence about the program, not a security boundary: the sandbox
stays the boundary.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Any, Sequence

from executor import serialize
from executor.messages import TestObservation
from core.records import Problem

PROBE_FN = "__rltf_record__"
CallInput = tuple[Sequence[Any], dict]

# Appended to the program. Installs the audit hook once when the program loads; the hook
# records only while a probed call is running.
_WRAPPER = '''

def __rltf_install_watch__():
    import sys as _sys
    state = {"on": False, "effects": set()}
    write_flags = 0o1 | 0o2 | 0o100 | 0o1000 | 0o2000
    module_suffixes = (".py", ".pyc", ".so", ".pth", ".pyi")
    kinds = {"socket.": "network", "urllib.": "network", "http.": "network",
             "subprocess.": "process", "os.system": "process", "os.exec": "process",
             "os.posix_spawn": "process", "os.spawn": "process", "os.fork": "process",
             "os.kill": "process", "os.remove": "file_write", "os.rename": "file_write",
             "os.mkdir": "file_write", "os.rmdir": "file_write", "os.chmod": "file_write",
             "os.chown": "file_write", "os.link": "file_write", "os.symlink": "file_write",
             "os.truncate": "file_write", "os.utime": "file_write", "shutil.": "file_write",
             "os.chdir": "environment", "os.putenv": "environment",
             "os.unsetenv": "environment", "ctypes.": "ctypes", "webbrowser.": "process"}

    def hook(event, args):
        if not state["on"]:
            return
        if event == "open":
            path, mode, flags = (list(args) + [None, None, None])[:3]
            if isinstance(path, int):
                return
            writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or \\
                (isinstance(flags, int) and flags & write_flags)
            if writes:
                state["effects"].add("file_write")
            elif not str(path).endswith(module_suffixes):
                state["effects"].add("file_read")
            return
        for prefix, kind in kinds.items():
            if event.startswith(prefix):
                state["effects"].add(kind)
                return

    _sys.addaudithook(hook)
    return state


__rltf_watch__ = __rltf_install_watch__()


def __rltf_record__(__rltf_fn, __rltf_args, __rltf_kwargs, __rltf_trace=False):
    import io as _io, sys as _sys, types as _types
    iterator_types = (_types.GeneratorType, map, filter, zip, enumerate, reversed,
                      type(iter([])), type(iter(())), type(iter("")), type(iter(range(0))),
                      type(iter({}.keys())), type(iter({}.values())), type(iter({}.items())),
                      type(iter(set())))
    state = __rltf_watch__
    state["effects"] = set()
    buf = _io.StringIO()
    saved = _sys.stdout, _sys.stderr
    lines = set()

    def local(frame, event, arg):
        if event == "line":
            lines.add(frame.f_lineno)
        return local

    def tracer(frame, event, arg):
        return local if frame.f_code.co_filename == "<program>" else None

    _sys.stdout = _sys.stderr = buf
    state["on"] = True
    if __rltf_trace:
        _sys.settrace(tracer)
    try:
        value = globals()[__rltf_fn](*__rltf_args, **__rltf_kwargs)
        kind = "value"
        if type(value) in iterator_types:  # those executor.serialize materialises
            value, kind = list(value), "iterator"
    finally:
        _sys.settrace(None)
        state["on"] = False
        _sys.stdout, _sys.stderr = saved
    effects = sorted(state["effects"])
    if buf.getvalue():
        effects.append("print")
    return [kind, value, effects, sorted(lines)]
'''


@dataclass
class Observation:
    """What one call of the function did in the sandbox.

    status: ok | error (it raised) | unserialisable (returned a value that is not plain
    data) | timeout | crash | output_limit | not_run (the program's budget ran out) |
    load_error (the program itself did not load)."""

    status: str
    value: Any = None
    iterator: bool = False
    effects: tuple[str, ...] = ()
    error: dict | None = field(default=None)
    lines: frozenset = frozenset()  # program lines the call ran (with trace=True)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def probe_program(source: str) -> str:
    """The program that runs in the sandbox: the source, then the recording wrapper."""
    return source.rstrip("\n") + "\n" + _WRAPPER


# The forms of plain data (executor.serialize): a value holding anything else (a Counter, a
# program's object, a function) is reported as unserialisable, as generated tests need
# values they can write down as literals.
_PLAIN_TAGS = frozenset(("$I", "$F", "$t", "$d", "$s", "$fs", "$c", "$b", "$ba", "$r", "$dk",
                         "$dv", "$di", "$it"))


def _plain(encoded) -> bool:
    todo = [encoded]
    while todo:
        item = todo.pop()
        if type(item) is list:
            todo.extend(item)
        elif type(item) is dict:
            for tag, body in item.items():
                if tag not in _PLAIN_TAGS:
                    return False
                todo.append(body)
    return True


def _observation(obs: TestObservation) -> Observation:
    status, err = obs.status, obs.err
    if status == "unjudgeable" or (status == "ok" and not _plain(obs.value)):
        return Observation("unserialisable", error=err or {
            "type": "TypeError", "line": None,
            "msg": str(obs.unjudgeable or "unserialisable: the value is not plain data")})
    if status == "ok":
        try:
            kind, value, effects, lines = serialize.decode(obs.encoded_value())
            return Observation("ok", value, kind == "iterator", tuple(effects),
                               lines=frozenset(lines))
        except (KeyError, ValueError, TypeError):
            return Observation("error", error={"type": "MalformedRecord", "line": None,
                                               "msg": "the probe's record is malformed"})
    return Observation(status, error=err)


def record_outputs(worker, source: str, fn_name: str, inputs: Sequence[CallInput],
                   time_limit_s: float | None = None, trace: bool = False
                   ) -> list[Observation]:
    """Call `fn_name` of `source` once per (args, kwargs) input, in order, in one sandboxed
    run on `worker` (an `executor.worker.Worker`); one Observation per input. With `trace`,
    each observation also lists the program lines the call executed (line coverage)."""
    if not inputs:
        return []
    tests = [{"input": [fn_name, list(args), dict(kwargs), trace], "output": None}
             for args, kwargs in inputs]
    problem = Problem(task_id=f"probe:{fn_name}", prompt="", format="call", fn_name=PROBE_FN,
                      tests=tests, time_limit_s=time_limit_s)
    resp = worker.observe(problem, probe_program(source))
    if resp.internal_error is not None:
        raise RuntimeError(f"fork-server failed: {resp.internal_error}")
    load_err = resp.syntax or resp.import_error or resp.setup_error
    if load_err:
        return [Observation("load_error", error=load_err) for _ in inputs]
    raw = resp.tests
    return [_observation(raw[k] if k < len(raw) else TestObservation())
            for k in range(len(inputs))]


@dataclass
class ProbeJob:
    """One `record_outputs` call for `record_many`; `avoid` names a worker index not to use
    (a second run on another fork-server also sees another string-hash seed)."""

    key: Any
    source: str
    fn_name: str
    inputs: Sequence[CallInput]
    avoid: int | None = None
    trace: bool = False


def record_many(workers: Sequence, jobs: Sequence[ProbeJob], time_limit_s: float | None = None,
                progress=None) -> dict[Any, tuple[int, list[Observation]]]:
    """Run jobs on several workers in parallel: {job.key: (worker index, observations)}."""
    todo: list[ProbeJob] = list(jobs)
    lock = threading.Lock()
    out: dict[Any, tuple[int, list[Observation]]] = {}

    def take(index: int) -> ProbeJob | None:
        with lock:
            for i, job in enumerate(todo):
                if job.avoid != index or len(workers) == 1:
                    return todo.pop(i)
            return None

    def serve(index: int) -> None:
        while True:
            job = take(index)
            if job is None:
                return
            try:
                obs = record_outputs(workers[index], job.source, job.fn_name, job.inputs,
                                     time_limit_s, job.trace)
            except Exception as exc:  # a dead sandbox: report it as crashes of this job
                obs = [Observation("crash", error={"type": type(exc).__name__, "line": None,
                                                   "msg": str(exc)[:400]})
                       for _ in job.inputs]
            with lock:
                out[job.key] = (index, obs)
            if progress is not None:
                progress()

    threads = [threading.Thread(target=serve, args=(i,), daemon=True)
               for i in range(len(workers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def same_value(a: Any, b: Any) -> bool:
    """Strict equality for determinism checks: same types throughout, nan equals nan."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    try:
        return bool(a == b)
    except Exception:
        return False
