"""Which recorded calls become unit tests, and the assert statements that state them.

    rows, reason, detail = select_inputs(inputs, observations, counts, 3, 10, 1000)
    rows, reason, detail = compare_rerun(rows, rerun_observations, 3)

A call whose input raised, timed out, crashed or returned something without an exact literal
is dropped as an input. A function is dropped when its program did not load, when any call
had side effects, when fewer than `min_tests` inputs survive (named after the commonest
cause), when every input gives the same output (a constant would pass its tests), or when a
rerun returns anything different. Of the survivors at most `per_function` are kept, chosen
greedily for program lines not yet covered and outputs not yet seen.
"""

from __future__ import annotations

import collections
from typing import NamedTuple

from executor.probe import Observation, same_value
from problems.gen_inputs import Unliteral, to_literal


class Row(NamedTuple):
    """One recorded call that can become a test."""

    args: list
    kwargs: dict
    obs: Observation
    test: str  # the assert statement


def call_source(args: list, kwargs: dict) -> str:
    parts = [to_literal(a) for a in args] + [f"{k}={to_literal(v)}" for k, v in kwargs.items()]
    return f"candidate({', '.join(parts)})"


def assert_source(args: list, kwargs: dict, obs: Observation) -> str:
    call = call_source(args, kwargs)
    if obs.iterator:
        call = f"list({call})"
    return f"assert {call} == {to_literal(obs.value, sort_dicts=True)}"


_CAUSE = {"error": "all inputs raise", "timeout": "timeout", "not_run": "timeout",
          "unserialisable": "unserialisable output", "unliteral": "unserialisable output",
          "crash": "crash", "output_limit": "side effects", "too_long": "outputs too long"}


def choose(rows: list[Row], n: int) -> list[Row]:
    """At most n rows, greedily for new program lines covered and new outputs, then in
    order; the chosen keep their original order."""
    chosen: list[int] = []
    covered: set = set()
    outputs: set = set()
    rest = list(range(len(rows)))

    def gain(i: int) -> int:
        obs, test = rows[i].obs, rows[i].test
        return len(obs.lines - covered) + (test.rpartition(" == ")[2] not in outputs)

    while rest and len(chosen) < n:
        best = max(rest, key=lambda i: (gain(i), -i))
        if gain(best) == 0:
            break
        chosen.append(best)
        rest.remove(best)
        covered |= rows[best].obs.lines
        outputs.add(rows[best].test.rpartition(" == ")[2])
    chosen += rest[: n - len(chosen)]
    return [rows[i] for i in sorted(chosen)]


def select_inputs(inputs: list[tuple[list, dict]], obs: list[Observation],
                  counts: collections.Counter, min_tests: int, per_function: int,
                  max_test_chars: int) -> tuple[list[Row], str | None, str]:
    """(kept rows, drop reason or None, detail) from the first recorded run; `counts`
    gathers why inputs were dropped."""
    if any(o.status == "load_error" for o in obs):
        err = next(o.error for o in obs if o.status == "load_error") or {}
        return [], "imports fail", f"{err.get('type')}: {err.get('msg')}"
    effects = sorted({e for o in obs if o.ok for e in o.effects})
    if effects:
        return [], "side effects", ", ".join(effects)
    kept, causes = [], collections.Counter()
    for (args, kwargs), o in zip(inputs, obs):
        cause = None if o.ok else o.status
        if o.ok:
            try:
                test = assert_source(args, kwargs, o)
                cause = "too_long" if len(test) > max_test_chars else None
            except Unliteral:
                cause = "unliteral"
        if cause:
            causes[cause] += 1
            continue
        kept.append(Row(args, kwargs, o, test))
    counts.update(causes)
    counts["valid"] += len(kept)
    if len(kept) < min_tests:
        detail = ", ".join(f"{k}={v}" for k, v in sorted(causes.items()))
        if not kept and causes:
            return [], _CAUSE.get(causes.most_common(1)[0][0], "all inputs raise"), detail
        return [], "too few valid inputs", detail
    if all(same_value(k.obs.value, kept[0].obs.value) for k in kept):
        return [], "constant output", f"always {to_literal(kept[0].obs.value)[:80]}"
    kept = choose(kept, per_function)
    counts["chosen"] += len(kept)
    return kept, None, ""


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
        if not o2.ok or o2.iterator != o1.iterator or not same_value(o1.value, o2.value):
            got = o2.error if not o2.ok else repr(o2.value)[:80]
            return [], "nondeterministic", f"{call_source(row.args, row.kwargs)[:120]}: " \
                                           f"{repr(o1.value)[:80]} then {got}"
        still.append(row)
    if len(still) < min_tests:
        return [], "timeout", "slow on the rerun"
    return still, None, ""
