"""The messages between an executor worker and its fork-server, as typed records.

    worker -> supervisor   RunRequest        one program and what it may see of its tests
    supervisor -> worker   Hello             once, when the fork-server has started
                           RunObservation    per request: raw observations, one
                                             TestObservation per test, for the worker to judge
    supervisor -> child    RunRequest.child_request(...), a dict (the child must not import
                           this module: every module the zygote holds makes each fork dearer)

On the pipes each record travels as the plain dict its `to_wire` gives (`executor.wire`
packs it with marshal); `from_wire` reads it back. A request carries the inputs of `stdio` and
`call` tests and only placeholders of `assert` tests (their code travels compiled, as the
probe copy, in `probe_codes`): the expected outputs stay with the worker, so no process that
runs program code ever holds them.

The records are small classes of their own (`Record`), not dataclasses: the fork-server
imports this module before it enters its sandbox (the project's folder is hidden from it
after), so it is in the memory every program is forked from, and the `dataclasses` module
would bring `inspect`, `ast` and `dis` there, making every fork dearer.
"""

from __future__ import annotations


class Record:
    """A typed record: its fields are the annotated names of the class, in order; a field
    with a class-level value has that default (a list default is copied), the others must be
    given. Equal when of the same class with equal fields."""

    _fields: tuple[str, ...] = ()

    def __init_subclass__(cls) -> None:
        cls._fields = tuple(cls.__dict__.get("__annotations__", {}))

    def __init__(self, *args, **kwargs):
        if len(args) > len(self._fields):
            raise TypeError(f"{type(self).__name__} takes {len(self._fields)} fields")
        for name, value in zip(self._fields, args):
            setattr(self, name, value)
        for name in self._fields[len(args):]:
            if name in kwargs:
                setattr(self, name, kwargs.pop(name))
            elif name in type(self).__dict__:
                default = type(self).__dict__[name]
                setattr(self, name, list(default) if type(default) is list else default)
            else:
                raise TypeError(f"{type(self).__name__} needs `{name}`")
        if kwargs:
            raise TypeError(f"{type(self).__name__} has no field `{next(iter(kwargs))}`")

    def __eq__(self, other) -> bool:
        return type(other) is type(self) and all(
            getattr(self, f) == getattr(other, f) for f in self._fields)

    def __repr__(self) -> str:
        body = ", ".join(f"{f}={getattr(self, f)!r}" for f in self._fields)
        return f"{type(self).__name__}({body})"


class RunRequest(Record):
    """One program to run on a problem's tests, in order, until its budget is spent."""

    format: str  # stdio | call | assert
    program: str  # the program's text (compiled by the supervisor, see executor.programtext)
    time_limit_s: float  # per test: its CPU time (the child's process, threads included)
    budget_s: float  # the whole program, all tests and restarts together
    output_limit: int  # bytes of standard output kept; more ends the run (output_limit)
    limits: dict  # executor.sandbox.Limits fields: memory_mb, cpu_s, file_size_mb, ...
    fn_name: str | None = None  # call: the function or method to call
    entry_point: str | None = None  # assert: the name the tests call
    inputs: list = []  # stdio: stdin texts; call: argument lists
    tests: list | None = None  # assert: one placeholder (None) per test
    setup: str | None = None  # assert: setup code run before the tests
    probe_codes: bytes | None = None  # assert: the tests compiled, marshalled (testcode)
    uses_random: bool | None = None  # assert: the tests use `random` (reseeded per test)
    wall_limit_s: float | None = None  # per test, wall-clock (None: time_limit_s)

    @property
    def n_tests(self) -> int:
        return len(self.tests or ()) if self.format == "assert" else len(self.inputs)

    def to_wire(self) -> dict:
        msg = {"op": "run"}
        for f in self._fields:
            msg[f] = getattr(self, f)
        return msg

    @classmethod
    def from_wire(cls, msg: dict) -> "RunRequest":
        return cls(**{f: msg[f] for f in cls._fields if f in msg})

    def child_request(self, code, rlimits: tuple) -> dict:
        """What the child reads (`executor.harness.child_main`): the compiled program, the
        test inputs (for `call` only: a `stdio` test's input is the child's standard input),
        the resource limits; the supervisor adds the program's `deadline` when it starts the
        program, and `start` (the first test to run) and `workdir` per attempt."""
        return {"format": self.format, "fn_name": self.fn_name,
                "entry_point": self.entry_point, "setup": self.setup, "tests": self.tests,
                "uses_random": self.uses_random, "time_limit_s": self.time_limit_s,
                "wall_limit_s": self.wall_limit_s,
                "output_limit": self.output_limit,
                "inputs": self.inputs if self.format == "call" else [],
                "code": code, "rlimits": rlimits, "codes": self.probe_codes}


class TestObservation(Record):
    """What one test did in the sandbox, unjudged.

    status: ok (it ran to its end) | error (it raised; `err`) | unjudgeable (a value that
    cannot cross; `unjudgeable` says why) | timeout | output_limit | crash | not_run.
    `err` is {"type", "line", "msg"}."""

    __test__ = False  # a record, not a test class for pytest to collect
    status: str = "not_run"
    value: object = None  # call: the returned value, encoded (executor.serialize); see has_value
    has_value: bool = False  # the encoded value may itself be None
    events: list | None = None  # assert: the test's calls into the program (executor.judge)
    err: dict | None = None
    unjudgeable: object = None
    stdout: str | None = None  # stdio: the program's standard output

    def to_wire(self) -> dict:
        msg: dict = {"status": self.status}
        if self.has_value:
            msg["v"] = self.value
        for key, v in (("events", self.events), ("err", self.err), ("u", self.unjudgeable),
                       ("stdout", self.stdout)):
            if v is not None:
                msg[key] = v
        return msg

    @classmethod
    def from_wire(cls, msg: dict) -> "TestObservation":
        return cls(status=msg.get("status", "not_run"), value=msg.get("v"),
                   has_value="v" in msg, events=msg.get("events"), err=msg.get("err"),
                   unjudgeable=msg.get("u"), stdout=msg.get("stdout"))

    def encoded_value(self) -> object:
        """The encoded return value; KeyError when the test returned none (a malformed
        record: the judge counts it a failure)."""
        if not self.has_value:
            raise KeyError("v")
        return self.value


class RunObservation(Record):
    """The supervisor's answer to a RunRequest: one TestObservation per test, or why the
    program did not get to its tests. Errors are {"type", "line", "msg"}."""

    tests: list[TestObservation] = []
    syntax: dict | None = None  # the program does not compile (plus "truncated")
    import_error: dict | None = None  # the program failed while loading
    setup_error: dict | None = None  # the tests' setup code failed
    setup_events: list | None = None  # assert: the setup's calls into the program
    isolation: str | None = None  # the sandbox's isolation, in words
    tier: str | None = None  # the sandbox's tier (executor.sandbox)
    duration_s: float = 0.0
    internal_error: str | None = None  # the fork-server itself failed on this request

    def to_wire(self) -> dict:
        msg = {f: getattr(self, f) for f in self._fields}
        msg["tests"] = [t.to_wire() for t in self.tests]
        return msg

    @classmethod
    def from_wire(cls, msg: dict) -> "RunObservation":
        obs = cls(**{f: msg[f] for f in cls._fields if f in msg and f != "tests"})
        obs.tests = [TestObservation.from_wire(t) for t in msg.get("tests") or ()]
        return obs


class Hello(Record):
    """The fork-server's first message: started (with its sandbox), or why not."""

    ok: bool
    error: str | None = None
    isolation: str = "none"
    tier: str = "none"
    notes: list = []
    pid: int | None = None
    uid: int | None = None  # the UID programs run as (None: the worker's user)
    cpu: int | None = None  # the CPU its programs run on (None: any)

    def to_wire(self) -> dict:
        return {f: getattr(self, f) for f in self._fields}

    @classmethod
    def from_wire(cls, msg: dict) -> "Hello":
        return cls(**{f: msg[f] for f in cls._fields if f in msg})

