"""Folding a child's records into per-test observations, in the fork-server's supervisor.

One run of a program may take several attempts: a child runs the tests from `start` until
it ends, is killed, or runs out of time, and the next attempt (a fresh child) starts after
the test it stopped on. Each attempt leaves an `Attempt`: the records the child wrote on its
record channel (untrusted JSON: every field is checked before use), its standard output, and
why the supervisor stopped it. `absorb` turns those into `TestObservation`s and says which
test the next attempt starts from; a test that was running when the child died, hung or
flooded its output is that test's crash, timeout or output limit.
"""

from __future__ import annotations

from executor.messages import RunObservation, TestObservation, Record


class Attempt(Record):
    """What one child left behind."""

    records: list  # the record channel's frames, in order (dicts, unchecked)
    garbled: bool  # the record channel held garbage or grew past its cap
    reason: str | None  # why the supervisor stopped it: timeout | output_limit | None
    stdout: bytes  # standard output, capped
    dump_line: int | None  # the program's line in the stack dump taken on timeout
    elapsed: float
    status: int  # the exit code (negative: the signal that killed it)


def absorb(att: Attempt, stdio: bool, obs: RunObservation, start: int) -> int:
    """Fold one attempt's records into `obs` (its tests from `start` on); return the next
    test to run (len(obs.tests): none)."""
    tests = obs.tests
    current = None
    for rec in att.records:
        t = rec.get("t")
        if t in ("import_error", "setup_error"):
            setattr(obs, t, rec.get("err"))
            for i in range(start, len(tests)):
                tests[i] = TestObservation("error", err=rec.get("err"))
            return len(tests)
        if t == "setup":  # the setup's calls into the program, as the first run made them
            if obs.setup_events is None:
                obs.setup_events = rec.get("events")
            continue
        k = rec.get("k")
        if not isinstance(k, int) or not (start <= k < len(tests)):
            continue
        if t == "begin":
            current = k
        elif t == "end" and tests[k].status == "not_run":
            test = TestObservation("error" if rec.get("err") else
                                   "unjudgeable" if "u" in rec else "ok",
                                   value=rec.get("v"), has_value="v" in rec,
                                   events=rec.get("events"), err=rec.get("err"),
                                   unjudgeable=rec.get("u"))
            if stdio:
                test.stdout = att.stdout.decode("utf-8", "replace")
            tests[k] = test
            if current == k:
                current = None
            if "nb" in rec and k + 1 < len(tests):
                current = k + 1
    if att.reason == "output_limit" and stdio:
        tests[start] = TestObservation("output_limit")
        return start + 1
    if stdio:
        if tests[start].status == "not_run":
            tests[start] = abnormal(att)
        return start + 1
    ready = any(r.get("t") == "ready" for r in att.records)
    if not ready:  # died or hung while loading the program
        test = abnormal(att)
        obs.import_error = test.err or {"type": test.status, "line": None,
                                        "msg": "the program did not load"}
        for i in range(start, len(tests)):
            tests[i] = TestObservation(test.status, err=test.err)
        return len(tests)
    if current is not None:
        tests[current] = abnormal(att)
        return current + 1
    done = [i for i in range(start, len(tests)) if tests[i].status == "not_run"]
    if done and not any(r.get("t") == "done" for r in att.records):
        # Ended between tests without saying done: the next test cannot be blamed.
        return done[0] + 1 if att.reason else done[0]
    return len(tests)


def abnormal(att: Attempt) -> TestObservation:
    """The observation of a test the child did not finish."""
    if att.reason == "timeout":
        return TestObservation("timeout", err={"type": "Timeout", "line": att.dump_line,
                                               "msg": "time limit exceeded"})
    if att.reason == "output_limit":
        return TestObservation("output_limit", err={"type": "OutputLimit", "line": None,
                                                    "msg": "output limit exceeded"})
    return TestObservation("crash", err={"type": "Crash", "line": None,
                                         "msg": "the program ended without a result"})
