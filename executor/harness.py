"""Runs inside the sandboxed child: executes the program and reports raw observations.

Nothing here decides a verdict. The child reports, on a record channel (fd 3), what happened:
the program loaded or raised; for each test, the values the program returned (`call`), the
calls the test code made into the program (`assert`, see `executor.testcode`), or the end of
a run over standard input (`stdio`, whose output travels on fd 1). The trusted parent compares
these with the expected outputs, which never enter this process.

Records are length-prefixed JSON frames. A test's "begin" record, and the "end" record of the
test before it (as "nb" and "nbc"), carry the time it began and the process's CPU time then,
from which the supervisor counts its time limits (CPU time and wall-clock). The program can
write to the same channel; a forged frame can only claim values, which the parent checks
itself, so forging gains nothing that computing the answer would not.
"""

from __future__ import annotations

import builtins
import copy
import faulthandler
import io
import json
import marshal
import os
import struct
import sys
import time

from executor import serialize
from executor.testnames import ASSERT, PROG, RANDOM, make_random

PROGRAM_FILE = "<program>"
REC_FD = 3
DUMP_FD = 4
_write = os.write
_marshal_loads = marshal.loads
_now = time.monotonic  # private: a program that replaces time.monotonic changes nothing here
_cpu = time.process_time  # the process's CPU time, all its threads
_pack = struct.Struct(">I").pack
_dumps = json.dumps
_encode = serialize.encode
_decode = serialize.decode
_Unserialisable = serialize.Unserialisable
_BaseException = BaseException
_type = type
_Module = type(sys)
_BUILTIN_NAMES = dict(builtins.__dict__)  # as they were before any program ran
_MAX_MSG = 400

# Names APPS-style programs expect without importing them (the APPS harness adds these).
PRELUDE_MODULES = ("sys", "math", "collections", "itertools", "heapq", "bisect", "string",
                   "re", "functools", "operator", "random", "copy", "fractions", "decimal",
                   "statistics", "time", "typing")
_TYPING_NAMES = ("List", "Dict", "Tuple", "Set", "FrozenSet", "Optional", "Union", "Any",
                 "Callable", "Iterable", "Iterator", "Deque", "DefaultDict", "Sequence",
                 "Mapping", "Generator")


def _record_encoder():
    """json.dumps(separators=(",", ":"), allow_nan=False) without its Python layers: the C
    encoder, made once (json.dumps with arguments builds a new encoder for every call)."""
    from json.encoder import c_make_encoder, encode_basestring_ascii

    if c_make_encoder is None:
        return lambda obj: _dumps(obj, separators=(",", ":"), allow_nan=False)

    def refuse(obj):
        raise TypeError(f"not JSON: {type(obj).__name__}")

    encoder = c_make_encoder(None, refuse, encode_basestring_ascii, None, ":", ",", False,
                             False, False)
    return lambda obj: "".join(encoder(obj, 0))


_encode_record = _record_encoder()


def send(*records: dict) -> None:
    """Write one or more frames in a single write."""
    frame = b""
    for record in records:
        data = _encode_record(record).encode()
        frame += _pack(len(data)) + data
    view = memoryview(frame)
    while view:
        try:
            n = _write(REC_FD, view)
        except InterruptedError:
            continue
        except OSError:
            return
        view = view[n:]


def error_info(exc: BaseException) -> dict:
    """Type, 1-based line of the deepest program frame (None if none), short message."""
    line = None
    if isinstance(exc, SyntaxError) and exc.filename == PROGRAM_FILE:
        line = exc.lineno
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == PROGRAM_FILE:
            line = tb.tb_lineno
        tb = tb.tb_next
    try:
        msg = str(exc)[:_MAX_MSG]
    except _BaseException:
        msg = "<unprintable>"
    return {"type": type(exc).__name__, "line": line, "msg": msg}


_PRELUDES: dict[str, dict] = {}


def _build_prelude(fmt: str) -> dict:
    ns: dict = {"__name__": "__main__" if fmt == "stdio" else "program",
                "__builtins__": builtins}
    if fmt in ("stdio", "call"):
        import importlib

        for name in PRELUDE_MODULES:
            ns[name] = importlib.import_module(name)
        typing = ns["typing"]
        for name in _TYPING_NAMES:
            ns[name] = getattr(typing, name)
    return ns


def warm_preludes() -> None:
    """Build the per-format starting namespaces once, in the fork-server, before forking."""
    for fmt in ("stdio", "call", "assert"):
        _PRELUDES[fmt] = _build_prelude(fmt)


def _prelude(fmt: str) -> dict:
    base = _PRELUDES.get(fmt)
    return dict(base) if base is not None else _build_prelude(fmt)


def _load(code, fmt: str) -> dict | None:
    # The program runs as a real module registered in sys.modules (this child is discarded
    # after the test), so code that looks its module up works: dataclasses resolving string
    # annotations under `from __future__ import annotations`, pickle, typing.get_type_hints.
    import types

    base = _prelude(fmt)
    module = types.ModuleType(base["__name__"])
    module.__dict__.update(base)
    sys.modules[base["__name__"]] = module
    ns = module.__dict__
    try:
        exec(code, ns)
    except _BaseException as exc:  # SystemExit and KeyboardInterrupt included
        send({"t": "import_error", "err": error_info(exc)})
        return None
    send({"t": "ready"})
    return ns


def _find_callable(ns: dict, name: str):
    fn = ns.get(name)
    if callable(fn):
        return fn
    cls = ns.get("Solution")
    if isinstance(cls, type):
        return getattr(cls(), name)
    raise NameError(f"name '{name}' is not defined (as a function or a Solution method)")


def run_call(code, req: dict, start: int) -> None:
    ns = _load(code, "call")
    if ns is None:
        return
    fn_name = req["fn_name"]
    n = len(req["inputs"])
    send({"t": "begin", "k": start, "ts": _now(), "cpu": _cpu()})
    for k in range(start, n):
        try:
            fn = _find_callable(ns, fn_name)
            result = fn(*copy.deepcopy(req["inputs"][k]))
            end = {"t": "end", "k": k, "v": _encode(result)}
        except _Unserialisable as exc:  # not the program's error: the judge cannot compare
            end = {"t": "end", "k": k, "u": f"the returned value cannot cross to the judge: "
                                            f"{exc}"}
        except _BaseException as exc:
            end = {"t": "end", "k": k, "err": error_info(exc)}
        if k + 1 < n:
            end["nb"], end["nbc"] = _now(), _cpu()  # the next test begins now
        send(end)


def run_stdio(code, req: dict, start: int) -> None:
    """One program run on the test input already attached to fd 0."""
    sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding="utf-8",
                                 errors="replace")
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8",
                                  errors="replace", write_through=False)
    send({"t": "begin", "k": start, "ts": _now(), "cpu": _cpu()})
    ns = _prelude("stdio")
    err = None
    try:
        exec(code, ns)
    except SystemExit:
        pass
    except _BaseException as exc:
        err = error_info(exc)
    try:
        sys.stdout.flush()
    except _BaseException:
        pass
    send({"t": "end", "k": start, **({"err": err} if err else {})})


_SCALARS = frozenset((int, float, str, bool, type(None), bytes, complex))


def _all_scalars(args: tuple, kwargs: dict) -> bool:
    for value in args:
        if type(value) not in _SCALARS:
            return False
    for value in kwargs.values():
        if type(value) not in _SCALARS:
            return False
    return True


def _reference(events: list, name: str, value):
    """What test code gets for a program name (or an attribute of one, `Colour.RED`): a
    recorder of calls for a callable, else the value, recorded for the judge's replay."""
    if _type(value) is _Module:  # the judge uses its own module of that name
        events.append({"k": "value", "name": name, "v": _encode(value)})
        return value
    if callable(value):
        return _Recorder(events, name, value)
    objects: list = []
    try:
        enc = _encode(value, objects)
    except _Unserialisable as exc:
        events.append({"k": "value", "name": name, "u": f"{name} cannot cross to the judge: "
                                                        f"{exc}"})
        return value
    events.append({"k": "value", "name": name, "v": enc})
    return _decode(enc, objects)


class _Recorder:
    """Calls into the program from test code, and reads of its attributes (a class's
    `Colour.RED`, `Solution.method`), recorded for the judge's replay."""

    def __init__(self, events: list, name: str, fn):
        self.events, self.name, self.fn = events, name, fn

    def __getattr__(self, attr: str):
        if attr.startswith("__"):  # introspection (copy, pickle...), not the test's reads
            raise AttributeError(attr)
        return _reference(self.events, f"{self.name}.{attr}", getattr(self.fn, attr))

    def __call__(self, *args, **kwargs):
        try:
            pre = _encode([list(args), kwargs], None, False)
        except _Unserialisable:
            pre = None
        event = {"k": "call", "name": self.name, "args": pre}
        self.events.append(event)
        try:
            result = self.fn(*args, **kwargs)
        except _BaseException as exc:
            event["err"] = error_info(exc)
            raise
        real: list = []  # objects that cross by identity: the test code keeps the real ones
        try:
            enc = _encode(result, real)
        except _Unserialisable as exc:  # the judge reports the test as unjudgeable
            event["u"] = f"the value {self.name}() returned cannot cross to the judge: {exc}"
            return result
        event["v"] = enc
        if pre is not None and not _all_scalars(args, kwargs):  # else nothing could change
            try:
                post = _encode([list(args), kwargs], None, False)
                if post != pre:
                    event["post"] = post
            except _Unserialisable:
                pass
        return _decode(enc, real)


serialize.STANDINS[_Recorder] = lambda enc, v, d: serialize.encode_program_name(enc, v, v.name)


def run_assert(code, req: dict, start: int) -> None:
    ns = _load(code, "assert")
    if ns is None:
        return
    entry = req["entry_point"]
    events: list = []  # the calls of the setup, then of each test in turn

    def prog(name: str):
        real = entry if name == "candidate" else name
        if real not in ns:
            # A built-in name the program might have redefined (see AssertPlan.shadowed_by): it
            # did not, so the test means the built-in, and the judge uses its own.
            if name in _BUILTIN_NAMES:
                return _BUILTIN_NAMES[name]
            raise NameError(f"name '{name}' is not defined")
        return _reference(events, name, ns[real])

    def probe(site: int, *holes) -> None:
        events.append({"k": "group", "site": site})
        try:
            for hole in holes:
                hole()
        finally:
            events.append({"k": "endgroup", "site": site})

    rnd = make_random("setup")
    test_ns = {"__builtins__": builtins, "__name__": "tests", PROG: prog, ASSERT: probe,
               RANDOM: rnd}
    blob = req.get("codes")  # the compiled tests, marshalled (see testcode.AssertPlan)
    codes = _marshal_loads(blob) if blob else {}
    try:
        exec(codes.get("setup") or compile(req["setup"] or "", "<setup>", "exec"), test_ns)
    except _BaseException as exc:
        send({"t": "setup_error", "err": error_info(exc)})
        return
    if events:  # the setup called into the program (e.g. built a tree of its Nodes)
        send({"t": "setup", "events": list(events)})
    n = len(req["tests"])
    uses_random = req.get("uses_random", True)
    send({"t": "begin", "k": start, "ts": _now(), "cpu": _cpu()})
    for k in range(start, n):
        events.clear()
        if uses_random:
            test_ns[RANDOM] = make_random(f"test-{k}")
        end = {"t": "end", "k": k, "events": events}
        try:
            exec(codes.get(k) or compile(req["tests"][k], "<tests>", "exec"), test_ns)
        except _BaseException as exc:
            end["err"] = error_info(exc)
        if k + 1 < n:
            end["nb"], end["nbc"] = _now(), _cpu()  # the next test begins now
        send(end)


def warm_up() -> None:
    """Run each format once on a small program, in the fork-server, before any fork.

    Children then start from interpreter state that has already specialised the harness's
    bytecode and built its caches, instead of each child doing that work again."""
    global REC_FD
    saved, REC_FD = REC_FD, os.open(os.devnull, os.O_WRONLY)
    try:
        code = compile("def f(x):\n    return [x, (x, {x: str(x)})]\n", PROGRAM_FILE, "exec")
        for _ in range(3):
            run_call(code, {"fn_name": "f", "inputs": [[1], [2.5], ["s"]]}, 0)
            run_assert(code, {"entry_point": "f", "setup": "import math",
                              "tests": ["__rltf_assert__(0, lambda: __rltf_prog__('f')(1))"] * 3},
                       0)
    finally:
        os.close(REC_FD)
        REC_FD = saved


_DUMP_FILE = None


def install_dump_handler() -> None:
    """In the zygote, once: SIGUSR1 makes a process write its stack to DUMP_FD. Children
    inherit the handler; the supervisor sends the signal to a child that ran out of time."""
    global _DUMP_FILE
    import signal

    _DUMP_FILE = io.FileIO(DUMP_FD, "w", closefd=False)
    faulthandler.register(signal.SIGUSR1, file=_DUMP_FILE, all_threads=True)
    sys.argv = ["program.py"]


def child_main(code, req: dict, start: int) -> None:
    """Entry point in the child, after isolation and limits are in place."""
    fmt = req["format"]
    try:
        if fmt == "call":
            run_call(code, req, start)
        elif fmt == "stdio":
            run_stdio(code, req, start)
        else:
            run_assert(code, req, start)
        send({"t": "done"})
    except _BaseException:
        import traceback

        traceback.print_exc()
