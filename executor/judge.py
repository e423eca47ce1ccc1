"""The trusted parent's verdicts: raw observations from the sandbox + expected outputs -> Result.

The program never sees what is expected. Here, per test:

* `stdio`: the captured standard output is compared line by line with the expected output
  (trailing whitespace and trailing blank lines ignored; tokens that are both numbers compare
  within a tolerance).
* `call`: the returned value (plain data, see `executor.serialize`) equals the expected one;
  tuples equal lists, floats compare within a tolerance, and, as APPS harnesses do, an
  expected output wrapped in a one-element list also accepts the bare value.
* `assert`: the judge copy of the test code runs here, replaying the program's recorded calls
  (`executor.testcode`), the setup's calls first.

Values the program returns are rebuilt here as trusted objects (`executor.serialize`,
`executor.values`) and compared by Python's own rules for those types; no program code runs
here. A test that needs something of a value the judge cannot safely compare (a program
object's method, a value too large to cross) is `unjudgeable`: it does not pass, and it is
not blamed on the program (see `Result` in `core.records`).

A test with no well-formed record fails. The program's outcome is its first error (by test
order) if any test raised, timed out, crashed or printed too much; otherwise pass or fail.
"""

from __future__ import annotations

import builtins
import math
from collections import deque
from typing import Any

from executor import serialize
from executor.messages import RunObservation, TestObservation
from core.records import Problem, Result
from executor.testcode import JUDGE, PROG, RANDOM, AssertPlan, make_random
from executor.values import ProgramObject, Unjudgeable

_BUILTIN_NAMES = vars(builtins)

_ERROR_OUTCOME = {"timeout": "timeout", "memory_error": "memory_error",
                  "output_limit": "output_limit", "error": "runtime_error",
                  "crash": "runtime_error", "not_run": "timeout"}


# -- comparisons ---------------------------------------------------------------------------
def _num(tok: str) -> float | None:
    try:
        return float(tok)
    except ValueError:
        return None


def _close(a: float, b: float, tol: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return math.isclose(a, b, rel_tol=tol, abs_tol=tol)


def stdout_matches(got: str, expected: str, tol: float = 1e-6) -> bool:
    g = [line.rstrip() for line in got.splitlines()]
    e = [line.rstrip() for line in expected.splitlines()]
    while g and not g[-1]:
        g.pop()
    while e and not e[-1]:
        e.pop()
    if g == e:
        return True
    if len(g) != len(e):
        return False
    for gl, el in zip(g, e):
        if gl == el:
            continue
        gt, et = gl.split(), el.split()
        if len(gt) != len(et):
            return False
        for a, b in zip(gt, et):
            if a == b:
                continue
            x, y = _num(a), _num(b)
            if x is None or y is None or not _close(x, y, tol):
                return False
    return True


def values_equal(got: Any, exp: Any, tol: float = 1e-6) -> bool:
    """Equality on plain values with tuples == lists and floats within `tol`."""
    if isinstance(got, tuple):
        got = list(got)
    if isinstance(exp, tuple):
        exp = list(exp)
    if isinstance(got, list) and isinstance(exp, list):
        return len(got) == len(exp) and all(values_equal(a, b, tol) for a, b in zip(got, exp))
    if isinstance(got, dict) and isinstance(exp, dict):
        if got.keys() != exp.keys():
            return False
        return all(values_equal(got[k], exp[k], tol) for k in got)
    if (type(got) is float or type(exp) is float) and not isinstance(got, bool) \
            and not isinstance(exp, bool) and isinstance(got, (int, float)) \
            and isinstance(exp, (int, float)):
        return _close(float(got), float(exp), tol)
    try:
        return bool(got == exp)
    except Exception:
        return False


def call_matches(got: Any, expected: Any, tol: float = 1e-6) -> bool:
    if values_equal(got, expected, tol):
        return True
    return isinstance(expected, list) and len(expected) == 1 and values_equal(got, expected[0], tol)


# -- assert replay ---------------------------------------------------------------------------
class ReplayMismatch(Exception):
    """The test called into the program in a way the sandbox did not record."""


def _program_exception(err: dict) -> BaseException:
    cls = getattr(builtins, str(err.get("type")), None)
    exc: BaseException
    if isinstance(cls, type) and issubclass(cls, Exception):
        try:
            exc = cls(err.get("msg", ""))
        except Exception:
            exc = RuntimeError(err.get("msg", ""))
    else:
        exc = RuntimeError(f"{err.get('type')}: {err.get('msg', '')}")
    exc._rltf_err = err  # type: ignore[attr-defined]
    return exc


def _mirror(target: Any, new: Any) -> None:
    """Apply the in-place change the program made to an argument."""
    if isinstance(target, (list, bytearray)) and isinstance(new, type(target)):
        target[:] = new
    elif isinstance(target, (dict, set, deque)) and isinstance(new, type(target)):
        target.clear()
        (target.extend if isinstance(target, deque) else target.update)(new)
    elif type(target) is ProgramObject and type(new) is ProgramObject:
        fields = object.__getattribute__(target, "_rltf_fields")
        fields.clear()
        fields.update(object.__getattribute__(new, "_rltf_fields"))


def _unjudgeable(ev: dict) -> None:
    if "u" in ev:
        raise Unjudgeable(str(ev["u"]))


class _Stub:
    """A program name (a function, a class) in the judge: calling it replays the recorded
    call; reading an attribute replays the recorded read of `name.attr`."""

    __slots__ = ("_replay", "_name")

    def __init__(self, replay: "Replay", name: str):
        self._replay, self._name = replay, name

    def __call__(self, *args, **kwargs):
        return self._replay.call(self._name, args, kwargs)

    def __getattr__(self, attr: str):
        if attr.startswith("__"):  # introspection, as in the sandbox's recorder
            raise AttributeError(attr)
        return self._replay.prog(f"{self._name}.{attr}")


serialize.STANDINS[_Stub] = lambda enc, v, d: serialize.encode_program_name(enc, v, v._name)


class Replay:
    """Stands in for the program while the judge copy of one test runs."""

    def __init__(self, events: list[dict]):
        self.events = events
        self.pos = 0
        self.end: int | None = None  # end of the current assert group

    def _limit(self) -> int:
        if self.end is not None:
            return self.end
        for i in range(self.pos, len(self.events)):
            if self.events[i].get("k") == "group":
                return i
        return len(self.events)

    def _find(self, kind: str, name: str, args_enc: Any = None, check_args: bool = False) -> dict:
        for i in range(self.pos, self._limit()):
            ev = self.events[i]
            if ev.get("k") != kind or ev.get("name") != name:
                continue
            if check_args and ev.get("args") is not None and ev.get("args") != args_enc:
                continue
            self.pos = i + 1
            return ev
        raise ReplayMismatch(f"no recorded {kind} of {name!r} matches the test's")

    def prog(self, name: str):
        """What the judge copy of a test gets for a program name (or `Name.attr`)."""
        # A name the program binds to a callable is called by the test; a plain value is read.
        kinds = {ev.get("k") for ev in self.events[self.pos:self._limit()]
                 if ev.get("name") == name}
        if "call" not in kinds and "value" in kinds:
            ev = self._find("value", name)
            _unjudgeable(ev)
            return serialize.decode(ev["v"])
        if not kinds and name in _BUILTIN_NAMES:  # a built-in the program did not redefine
            return _BUILTIN_NAMES[name]
        return _Stub(self, name)

    def call(self, name: str, args: tuple, kwargs: dict):
        try:
            enc = serialize.encode([list(args), kwargs], None, False)
            check = True
        except serialize.Unserialisable:
            enc, check = None, False
        ev = self._find("call", name, enc, check)
        _unjudgeable(ev)
        if "err" in ev:
            raise _program_exception(ev["err"])
        if "post" in ev:
            post_args, post_kwargs = serialize.decode(ev["post"])
            for a, b in zip(args, post_args):
                _mirror(a, b)
            for key, val in post_kwargs.items():
                if key in kwargs:
                    _mirror(kwargs[key], val)
        if "v" not in ev:
            raise ReplayMismatch(f"the call of {name!r} has no recorded result")
        return serialize.decode(ev["v"])

    def judge(self, site: int, expr) -> None:
        start = None
        for i in range(self.pos, len(self.events)):
            ev = self.events[i]
            if ev.get("k") == "group" and ev.get("site") == site:
                start = i
                break
        if start is None:
            raise ReplayMismatch(f"assertion {site} was not evaluated in the sandbox")
        end = next((j for j in range(start + 1, len(self.events))
                    if self.events[j].get("k") == "endgroup"), None)
        if end is None:
            raise ReplayMismatch(f"assertion {site} did not finish in the sandbox")
        self.pos, self.end = start + 1, end
        try:
            ok = expr()
        finally:
            self.pos, self.end = end + 1, None
        if not ok:
            raise AssertionError(f"assertion {site} is false")


def _run_judge_code(code, ns: dict) -> tuple[str, dict | None]:
    """(status, error) of running one piece of judge code (a test, or the setup)."""
    try:
        exec(code, ns)
    except Unjudgeable as exc:
        return "unjudgeable", {"type": "Unjudgeable", "line": None, "msg": str(exc)[:400]}
    except RecursionError:
        return "unjudgeable", {"type": "Unjudgeable", "line": None,
                               "msg": "the values are nested too deeply to compare"}
    except Exception as exc:
        err = getattr(exc, "_rltf_err", None)
        if err is not None:
            return ("memory_error" if err.get("type") == "MemoryError" else "error"), err
        if isinstance(exc, (AssertionError, ReplayMismatch)):
            return "fail", None
        return "error", {"type": type(exc).__name__, "line": None, "msg": str(exc)[:400]}
    return "pass", None


def judge_assert_test(plan: AssertPlan, setup_ns: dict, k: int, events: list[dict]
                      ) -> tuple[str, dict | None]:
    """(status, error) of test k from its recorded program calls."""
    replay = Replay(events)
    ns = setup_ns  # one namespace for all tests of a program, as in the sandbox
    ns.update({PROG: replay.prog, JUDGE: replay.judge})
    if plan.uses_random:
        ns[RANDOM] = make_random(f"test-{k}")
    return _run_judge_code(plan.judge_code(k), ns)


def judge_setup_namespace(plan: AssertPlan, events: list[dict] | None = None
                          ) -> tuple[dict, tuple[str, dict | None]]:
    """The tests' namespace after the judge copy of the setup ran, replaying the setup's
    recorded calls into the program; and (status, error) of that run ("pass" when it ran)."""
    ns: dict = {"__builtins__": builtins, "__name__": "tests", RANDOM: make_random("setup")}
    replay = Replay(events or [])
    ns.update({PROG: replay.prog, JUDGE: replay.judge})
    return ns, _run_judge_code(plan.judge_code(None), ns)


# -- the verdict ------------------------------------------------------------------------------
def _status_of_error(err: dict | None, default: str = "error") -> str:
    if err and err.get("type") == "MemoryError":
        return "memory_error"
    return default


def judge_program(problem: Problem, resp: RunObservation, plan: AssertPlan | None = None,
                  tol: float = 1e-6, task_id: str | None = None,
                  sample_id: Any = None) -> Result:
    n = len(problem.tests)
    base = {"task_id": task_id or problem.task_id, "sample_id": sample_id, "total": n,
            "duration_s": float(resp.duration_s or 0.0),
            "isolation": resp.tier}
    syntax = resp.syntax
    if syntax is not None:
        return Result(outcome="syntax_error", passed=0, tests=["not_run"] * n,
                      error_type=syntax.get("type") or "SyntaxError", error_line=syntax.get("line"),
                      error_message=syntax.get("msg"), truncated=bool(syntax.get("truncated")),
                      **base)
    if resp.internal_error is not None:
        raise RuntimeError(f"fork-server failed: {resp.internal_error}")
    obs_list = resp.tests
    statuses: list[str] = []
    errors: list[dict | None] = []
    setup = None
    for k in range(n):
        obs = obs_list[k] if k < len(obs_list) else TestObservation()
        st, err = obs.status, obs.err
        if st == "ok":
            try:
                if problem.format == "stdio":
                    st = "pass" if stdout_matches(obs.stdout or "",
                                                  problem.tests[k]["output"], tol) else "fail"
                elif problem.format == "call":
                    got = serialize.decode(obs.encoded_value())
                    st = "pass" if call_matches(got, problem.tests[k]["output"], tol) else "fail"
                else:
                    assert plan is not None
                    if setup is None:
                        setup = judge_setup_namespace(plan, resp.setup_events)
                    setup_ns, (setup_st, setup_err) = setup
                    if setup_st != "pass":
                        st, err = setup_st, setup_err
                    else:
                        st, err = judge_assert_test(plan, setup_ns, k, obs.events or [])
            except (KeyError, ValueError, TypeError):
                st, err = "fail", None  # malformed record: a failure, never a pass
            except Unjudgeable as exc:  # e.g. a call-format value that cannot be compared
                st, err = "unjudgeable", {"type": "Unjudgeable", "line": None,
                                          "msg": str(exc)[:400]}
            except RecursionError:
                st, err = "unjudgeable", {"type": "Unjudgeable", "line": None,
                                          "msg": "the values are nested too deeply to compare"}
        elif st == "error":
            st = _status_of_error(err)
        elif st == "unjudgeable":
            err = {"type": "Unjudgeable", "line": None, "msg": str(obs.unjudgeable)[:400]}
        statuses.append(st)
        errors.append(err)
    passed = statuses.count("pass")
    first_bad = next((i for i, s in enumerate(statuses)
                      if s not in ("pass", "fail", "unjudgeable")), None)
    if passed == n:
        return Result(outcome="pass", passed=passed, tests=statuses, **base)
    if first_bad is None:  # failed; say why when a test could not be judged
        unjudged = next((errors[i] for i, s in enumerate(statuses) if s == "unjudgeable"), None)
        if unjudged:
            base.update(error_type="Unjudgeable", error_message=unjudged.get("msg"))
        return Result(outcome="fail", passed=passed, tests=statuses, **base)
    err = errors[first_bad] or {}
    if resp.import_error and statuses[first_bad] in ("error", "crash", "memory_error",
                                                            "timeout"):
        err = resp.import_error or err
    return Result(outcome=_ERROR_OUTCOME.get(statuses[first_bad], "runtime_error")
                  if statuses[first_bad] != "memory_error" else "memory_error",
                  passed=passed, tests=statuses, error_type=err.get("type"),
                  error_line=err.get("line"), error_message=err.get("msg"), **base)
