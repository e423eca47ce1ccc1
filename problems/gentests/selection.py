"""From recorded calls to unit tests: which inputs to keep, and the assert code of each.

    rows, reason, detail = valid_rows(inputs, observations, counts, min_tests, ...)
    kept = choose(rows, 10, kills)          # greedy: mutants killed, lines covered, outputs
    test = rows[0].test                     # "assert candidate(3, [1, 2]) == 5"

A function is dropped when its program did not load, when any call had side effects, when
fewer than `min_tests` inputs survive (named after the commonest cause), when every input
gives the same output and none raises (a constant would pass its tests), or when a rerun
returns anything different.

A call that returned becomes `assert candidate(...) == value`; when the value holds a float,
`assert approx(candidate(...), value)` with `approx` (in the problem's setup code) comparing
floats within a relative 1e-6 (absolute 1e-9), so a solution that sums in another order still
passes. A call that raised a built-in exception that the program raises itself
(`raise ValueError(...)`) may become a test that expects that exception, as a user's own test
would; at most a third of a problem's tests are such tests. Calls that raised anything else
are dropped.

`choose` keeps at most n rows, greedily: first for mutants of the reference (see
`problems.gentests.mutants`) not yet killed, then for program lines not yet covered, then for
outputs not yet seen.
"""

from __future__ import annotations

import collections
from typing import Any, NamedTuple

from problems.gentests.probe import Observation, same_value
from problems.gentests.literals import Unliteral, to_literal

APPROX_SETUP = '''def approx(got, expected):
    """Equal, except that floats may differ by a relative 1e-6 (absolute 1e-9 near zero)."""
    import math

    numbers = (int, float)
    if type(got) in numbers and type(expected) in numbers and float in (type(got),
                                                                       type(expected)):
        try:
            return got == expected or math.isclose(got, expected, rel_tol=1e-6, abs_tol=1e-9)
        except OverflowError:  # an int too large for a float
            return False
    if type(got) is not type(expected):
        return False
    if type(expected) in (list, tuple):
        return len(got) == len(expected) and all(map(approx, got, expected))
    if type(expected) is dict:
        return got.keys() == expected.keys() and all(approx(got[k], v)
                                                     for k, v in expected.items())
    return got == expected
'''


class Row(NamedTuple):
    """One recorded call that can become a test."""

    args: list
    kwargs: dict
    obs: Observation
    test: str  # the test's code
    raises: str | None = None  # the exception the test expects (None: a returned value)


def call_source(args: list, kwargs: dict) -> str:
    parts = [to_literal(a) for a in args] + [f"{k}={to_literal(v)}" for k, v in kwargs.items()]
    return f"candidate({', '.join(parts)})"


def has_float(v: Any) -> bool:
    t = type(v)
    if t is float:
        return True
    if t in (list, tuple, set, frozenset):
        return any(has_float(x) for x in v)
    if t is dict:
        return any(has_float(x) for x in v.values()) or any(has_float(k) for k in v)
    return False


def assert_source(args: list, kwargs: dict, obs: Observation) -> str:
    call = call_source(args, kwargs)
    if obs.iterator:
        call = f"list({call})"
    expected = to_literal(obs.value, sort_dicts=True)
    if has_float(obs.value) and not _float_in_keys_or_sets(obs.value):
        return f"assert approx({call}, {expected})"
    return f"assert {call} == {expected}"


def _float_in_keys_or_sets(v: Any) -> bool:
    t = type(v)
    if t in (set, frozenset):
        return has_float(v)
    if t is dict:
        return any(has_float(k) for k in v) or any(_float_in_keys_or_sets(x) for x in v.values())
    if t in (list, tuple):
        return any(_float_in_keys_or_sets(x) for x in v)
    return False


def raises_source(args: list, kwargs: dict, exc: str) -> str:
    return (f"try:\n    {call_source(args, kwargs)}\nexcept {exc}:\n    pass\n"
            f"else:\n    assert False, 'expected {exc}'")


def uses_approx(tests: list[str]) -> bool:
    return any(t.startswith("assert approx(") for t in tests)


def _approx():
    ns: dict = {}
    exec(APPROX_SETUP, ns)
    return ns["approx"]


close = _approx()  # what the tests check: the same `approx` as their setup code


def killed_by(row: Row, obs: Observation) -> bool | None:
    """Whether a mutant's observation on the row's input fails the row's test (None: the
    call did not run)."""
    if obs.status == "not_run":
        return None
    if row.raises is not None:
        return not (obs.status == "error" and (obs.error or {}).get("type") == row.raises)
    if not obs.ok or (obs.iterator and not row.obs.iterator):
        return True  # list(...) around an iterator's call accepts a list too
    if row.test.startswith("assert approx("):
        return not close(obs.value, row.obs.value)
    try:
        return not bool(obs.value == row.obs.value)
    except Exception:
        return True


_CAUSE = {"error": "all inputs raise", "timeout": "timeout", "not_run": "timeout",
          "unserialisable": "unserialisable output", "unliteral": "unserialisable output",
          "crash": "crash", "output_limit": "side effects", "too_long": "outputs too long"}


def valid_rows(inputs: list[tuple[list, dict]], obs: list[Observation],
               counts: collections.Counter, min_tests: int, max_test_chars: int,
               raises: frozenset = frozenset()) -> tuple[list[Row], str | None, str]:
    """(every row that can become a test, drop reason or None, detail) from the first
    recorded run; `counts` gathers why inputs were dropped."""
    if any(o.status == "load_error" for o in obs):
        err = next(o.error for o in obs if o.status == "load_error") or {}
        return [], "imports fail", f"{err.get('type')}: {err.get('msg')}"
    effects = sorted({e for o in obs if o.ok for e in o.effects})
    if effects:
        return [], "side effects", ", ".join(effects)
    rows, causes = [], collections.Counter()
    for (args, kwargs), o in zip(inputs, obs):
        cause, exc = (None if o.ok else o.status), None
        if o.status == "error" and (o.error or {}).get("type") in raises and not o.effects:
            cause, exc = None, o.error["type"]
        if cause is None:
            try:
                test = raises_source(args, kwargs, exc) if exc else assert_source(args, kwargs, o)
                cause = "too_long" if len(test) > max_test_chars else None
            except Unliteral:
                cause = "unliteral"
        if cause:
            causes[cause] += 1
            continue
        rows.append(Row(args, kwargs, o, test, exc))
    counts.update(causes)
    values = [r for r in rows if r.raises is None]
    counts["valid"] += len(values)
    counts["valid_raises"] += len(rows) - len(values)
    if len(rows) < min_tests or not values:
        detail = ", ".join(f"{k}={v}" for k, v in sorted(causes.items()))
        if not values and len(rows) == len(obs):
            return [], "all inputs raise", f"{len(rows)} raised {rows[0].raises}" if rows else ""
        if not values and causes:
            return [], _CAUSE.get(causes.most_common(1)[0][0], "all inputs raise"), detail
        return [], "too few valid inputs", detail
    if len(values) == len(rows) and all(same_value(r.obs.value, values[0].obs.value)
                                        for r in values):
        return [], "constant output", f"always {to_literal(values[0].obs.value)[:80]}"
    return rows, None, ""


def choose(rows: list[Row], n: int, kills: list[set] | None = None,
           max_raises: int | None = None) -> list[Row]:
    """At most n rows (at most `max_raises` expecting exceptions), greedily for mutants not
    yet killed (`kills[i]`: ids of the mutants row i kills), new program lines covered and
    new outputs, then in order; the chosen keep their original order."""
    kills = kills or [set() for _ in rows]
    max_raises = n if max_raises is None else max_raises
    chosen: list[int] = []
    killed: set = set()
    covered: set = set()
    outputs: set = set()
    rest = list(range(len(rows)))

    def allowed(i: int) -> bool:
        return rows[i].raises is None or sum(rows[j].raises is not None
                                             for j in chosen) < max_raises

    def gain(i: int) -> tuple[int, int]:
        obs, test = rows[i].obs, rows[i].test
        new_output = test.rpartition(" == ")[2] not in outputs
        return len(kills[i] - killed), len(obs.lines - covered) + new_output

    while rest and len(chosen) < n:
        options = [i for i in rest if allowed(i)]
        if not options:
            break
        best = max(options, key=lambda i: (gain(i), -i))
        if gain(best) == (0, 0):
            break
        chosen.append(best)
        rest.remove(best)
        killed |= kills[best]
        covered |= rows[best].obs.lines
        outputs.add(rows[best].test.rpartition(" == ")[2])
    for i in rest:
        if len(chosen) >= n:
            break
        if allowed(i) and rows[i].raises is None:
            chosen.append(i)
    return [rows[i] for i in sorted(chosen)]


def compare_rerun(kept: list[Row], obs2: list[Observation], min_tests: int
                  ) -> tuple[list[Row], str | None, str]:
    """Match the rerun (run on the kept inputs in reverse order) against the first run;
    inputs too slow on the rerun are dropped."""
    still = []
    for row, o2 in zip(kept, reversed(obs2)):
        o1 = row.obs
        if o2.status in ("timeout", "not_run"):
            continue
        if o2.effects:
            return [], "side effects", ", ".join(o2.effects)
        if row.raises is not None:
            same = o2.status == "error" and (o2.error or {}).get("type") == row.raises
        else:
            same = o2.ok and o2.iterator == o1.iterator and same_value(o1.value, o2.value)
        if not same:
            got = o2.error if not o2.ok else repr(o2.value)[:80]
            was = row.raises or repr(o1.value)[:80]
            return [], "nondeterministic", f"{call_source(row.args, row.kwargs)[:120]}: " \
                                           f"{was} then {got}"
        still.append(row)
    if len(still) < min_tests:
        return [], "timeout", "slow on the rerun"
    return still, None, ""
