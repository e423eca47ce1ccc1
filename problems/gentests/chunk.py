"""One chunk of candidate functions through the sandboxed stages of `rltf gen-tests`.

    problems = run_chunk(cands, sandboxes, settings, report)

Stages, each one batch of sandboxed runs over the whole chunk:

1. probe types: parameters no static source typed get types from runtime probing
   (`problems.gentests.probe_types`), or the function is dropped as "parameter types unknown";
2. record: the reference runs on `pool_factor x per_function` inputs (`problems.gentests.rows`),
   with side effects and line coverage watched; the usable calls become candidate tests
   (`problems.gentests.selection.valid_rows`); a function whose calls make too few tests (constant
   output, too few valid, all raising, timeouts) gets a second set of inputs from tiny
   domains, pooled with the first;
3. mutants: up to `max_mutants` mutants of the reference (`problems.gentests.mutants`) run on the
   same inputs (short limits, eight mutants to a sandboxed run); a `guide_fraction` of them
   steer the choice of tests, which then goes greedily for mutants killed, lines covered and
   outputs seen;
4. rerun: the chosen inputs again, reversed, on another fork-server: a function whose
   results change is dropped as nondeterministic;
5. verify: the problem's reference is judged against its tests by the executor pool and
   must pass all of them;
6. score: every mutant is judged by the executor pool against the tests; the share rejected
   is the problem's mutation score (`metadata["mutation"]`); problems under
   `min_mutation_score` are dropped. A mutant that stage 3 saw failing one of the chosen
   tests is judged on that test alone (one failing test suffices), the others on all tests.
"""

from __future__ import annotations

import collections
import random
import time

from problems.gentests.probe import ProbeJob
from core.records import Problem, Solution
from problems.gentests.literals import Unliteral, to_literal
from problems.gentests.mutants import BUNDLE_FN, SKIPPED, bundle, mutants
from problems.gentests.probe_types import probe_types
from problems.gentests.rows import make_inputs
from problems.gentests.selection import (APPROX_SETUP, choose, compare_rerun, killed_by,
                                         uses_approx, valid_rows)


def _timed(report, name: str, t0: float) -> float:
    now = time.monotonic()
    report.timings_s[name] = report.timings_s.get(name, 0.0) + now - t0
    return now


def _probe(cands, sb, st, report) -> list:
    """Types for the parameters still unknown; every candidate's sources go to the report."""
    todo = [c for c in cands if c.unknown]
    found = probe_types(todo, sb.record, seed=st.seed, time_limit_s=st.probe_time_limit_s) \
        if todo and st.probe else {}
    report.counts["probe_runs"] += sum(o.runs for o in found.values())
    out = []
    for c in cands:
        got = found.get(c.task_id)
        if got is not None and got.specs is not None:
            for p in c.params:
                if p.spec is None:
                    p.spec, p.source = got.specs[p.name], "probe"
        report.type_sources[c.task_id] = c.type_sources
        if c.unknown:
            detail = got.detail if got is not None else \
                ", ".join(p.name for p in c.unknown) + " (probing is off)"
            report.drop(c.task_id, "parameter types unknown", detail, c.path, c.lineno)
            continue
        out.append(c)
    return out


def _record_mutants(cands, pool, muts, sb, st, group: int = 8) -> dict:
    """{(task_id, mutant id): [Observation or None (not run), one per row]}: each function's
    mutants run on its rows, `group` mutants to a program (`problems.gentests.mutants.bundle`)."""
    jobs, layout = [], {}
    for c in cands:
        calls = [(r.args, r.kwargs) for r in pool[c.task_id]]
        ms = muts[c.task_id]
        for g in range(0, len(ms), group):
            part = ms[g:g + group]
            key = (c.task_id, g)
            layout[key] = part
            jobs.append(ProbeJob(key, bundle(c.solution, c.name, part), BUNDLE_FN,
                                 [((k, i, *args), kwargs) for k in range(len(part))
                                  for i, (args, kwargs) in enumerate(calls)]))
    got = sb.record(jobs, st.mutant_time_limit_s)
    out = {}
    for (tid, g), part in layout.items():
        obs = got[(tid, g)][1]
        n = len(pool[tid])
        for k, m in enumerate(part):
            out[(tid, m.id)] = [None if o.status == "not_run" or (
                o.status == "error" and (o.error or {}).get("type") == SKIPPED) else o
                for o in obs[k * n:(k + 1) * n]]
    return out


def _doctest_agreement(cand, rows) -> dict:
    """How many own doctest examples ran in the sandbox, and how many of their outputs
    read as the doctest's expected text."""
    by_call = {}
    for r in rows:
        try:
            by_call[to_literal((tuple(r.args), r.kwargs))] = r
        except Unliteral:
            pass
    ran = agree = 0
    for call in cand.doctests:
        try:
            row = by_call.get(to_literal((tuple(call.args), call.kwargs)))
        except Unliteral:
            row = None
        if row is None or row.raises is not None:
            continue
        ran += 1
        value = list(row.obs.value) if row.obs.iterator else row.obs.value
        agree += " ".join(repr(value).split()) == " ".join(call.want.split())
    return {"examples": len(cand.doctests), "ran": ran, "agree": agree}


def _problem(cand, rows, st, mutation: dict, doctests: dict) -> Problem:
    tests = [r.test for r in rows]
    return Problem(
        task_id=cand.task_id, prompt=cand.prompt, format="assert", entry_point=cand.name,
        tests=tests, setup=APPROX_SETUP if uses_approx(tests) else None,
        starter_code=cand.prompt, solutions=[cand.solution],
        metadata={"generator": "rltf gen-tests", "seed": st.seed, "source": cand.path,
                  "line": cand.lineno, "typed": cand.typed,
                  "type_sources": cand.type_sources, "has_docstring": cand.has_docstring,
                  "params": [f"{'*' if p.kind == 'vararg' else ''}{p.name}: {p.spec}"
                             for p in cand.params],
                  "tests_raising": sum(r.raises is not None for r in rows),
                  "doctests": doctests, "mutation": mutation})


def _each(cands, report, step) -> dict:
    """{task_id: step(c)} for each candidate; a candidate whose step returns a drop
    (reason, detail) or raises is dropped (one odd function never stops a corpus)."""
    out = {}
    for c in cands:
        try:
            got = step(c)
        except Exception as exc:  # noqa: BLE001 - reported with the function, never lost
            got = _Drop("generator error", f"{type(exc).__name__}: {exc}")
        if isinstance(got, _Drop):
            report.drop(c.task_id, got.reason, got.detail, c.path, c.lineno)
        else:
            out[c.task_id] = got
    return out


class _Drop(tuple):
    def __new__(cls, reason: str, detail: str = ""):
        return super().__new__(cls, (reason, detail))

    reason = property(lambda self: self[0])
    detail = property(lambda self: self[1])


SECOND_CHANCE = ("constant output", "too few valid inputs", "all inputs raise", "timeout")


def _usable(cands, inputs, first, sb, st, report) -> dict:
    """{task_id: rows that can become tests}. A function whose recorded calls do not make
    enough tests (constant output, too few valid, all raising, timeouts) gets a second
    chance: inputs from tiny domains (`make_inputs(small=True)`), recorded and pooled with
    the first ones."""
    tallies = {c.task_id: collections.Counter() for c in cands}

    def check(c, ins, obs, counts):
        rows, reason, detail = valid_rows(ins, obs, counts, st.min_tests, st.max_test_chars,
                                          c.raises)
        return _Drop(reason, detail) if reason else rows

    held = _Held()
    firsts = _each(cands, held, lambda c: check(c, inputs[c.task_id], first[c.task_id][1],
                                                tallies[c.task_id]))
    retry = []
    for c in cands:
        why = held.reasons.get(c.task_id)
        if why is not None and why[0] in SECOND_CHANCE:
            retry.append(c)
            continue
        report.inputs.update(tallies[c.task_id])
        if why is not None:
            report.drop(c.task_id, *why, c.path, c.lineno)
    more = _each(retry, report, lambda c: make_inputs(c, st.seed, st.per_function *
                                                      st.pool_factor, small=True))
    retry = [c for c in retry if c.task_id in more]
    report.counts["second_chance"] += len(retry)
    second = sb.record([ProbeJob(c.task_id, c.solution, c.name, more[c.task_id], None, True)
                        for c in retry], st.time_limit_s)

    def pooled(c):
        seen = {to_literal((tuple(a), k)) for a, k in inputs[c.task_id]}
        extra = [(i, row) for i, row in enumerate(more[c.task_id])
                 if to_literal((tuple(row[0]), row[1])) not in seen]
        obs = second[c.task_id][1]
        ins = inputs[c.task_id] + [row for _, row in extra]
        return check(c, ins, first[c.task_id][1] + [obs[i] for i, _ in extra], report.inputs)

    again = _each(retry, report, pooled)
    report.counts["second_chance_kept"] += len(again)
    return {**firsts, **again}


class _Held:
    """Drops held back (the first look of `_usable`, before a second chance)."""

    def __init__(self):
        self.reasons: dict[str, tuple[str, str]] = {}

    def drop(self, task_id: str, reason: str, detail: str = "", *where) -> None:
        self.reasons[task_id] = (reason, detail)


def run_chunk(cands, sb, st, report) -> list[Problem]:
    t0 = time.monotonic()
    cands = _probe(cands, sb, st, report)
    t0 = _timed(report, "probe_types", t0)
    inputs = _each(cands, report,
                   lambda c: make_inputs(c, st.seed, st.per_function * st.pool_factor))
    cands = [c for c in cands if c.task_id in inputs]
    report.inputs["generated"] += sum(map(len, inputs.values()))
    first = sb.record([ProbeJob(c.task_id, c.solution, c.name, inputs[c.task_id], None, True)
                       for c in cands], st.time_limit_s)
    t0 = _timed(report, "record", t0)

    pool = _usable(cands, inputs, first, sb, st, report)
    cands = [c for c in cands if c.task_id in pool]

    # 3. mutants on the same inputs; the guide share steers the choice of tests
    def draw(c):
        rng = random.Random(f"{st.seed}:{c.task_id}")
        ms = mutants(c.solution, c.name, st.max_mutants, rng)
        return ms, set(rng.sample([m.id for m in ms], round(len(ms) * st.guide_fraction)))

    drawn = _each(cands, report, draw)
    cands = [c for c in cands if c.task_id in drawn]
    muts = {tid: ms for tid, (ms, _) in drawn.items()}
    guide = {tid: g for tid, (_, g) in drawn.items()}
    seen = _record_mutants(cands, pool, muts, sb, st)
    t0 = _timed(report, "mutants_record", t0)
    kills: dict[str, list[set]] = {}  # per row: ids of the mutants its test rejects

    def pick(c):
        # Whether a call times out depends on the machine's load as much as on the mutant:
        # such kills pick the test a mutant is judged on first (stage 6), never the tests.
        rows = pool[c.task_id]
        kills[c.task_id] = [set() for _ in rows]
        steer = [set() for _ in rows]
        for m in muts[c.task_id]:
            for i, o in enumerate(seen[(c.task_id, m.id)]):
                if o is not None and killed_by(rows[i], o):
                    kills[c.task_id][i].add(m.id)
                    if o.status != "timeout" and m.id in guide[c.task_id]:
                        steer[i].add(m.id)
        return choose(rows, st.per_function, steer, max(1, st.per_function // 3))

    chosen = _each(cands, report, pick)
    cands = [c for c in cands if c.task_id in chosen]

    # 4. rerun on another fork-server
    again = sb.record([ProbeJob(c.task_id, c.solution, c.name,
                                [(r.args, r.kwargs) for r in reversed(chosen[c.task_id])],
                                first[c.task_id][0]) for c in cands], st.time_limit_s)
    t0 = _timed(report, "rerun", t0)

    def build(c):
        rows, reason, detail = compare_rerun(chosen[c.task_id], again[c.task_id][1],
                                             st.min_tests)
        if reason:
            return _Drop(reason, detail)
        return rows, _problem(c, rows, st, {}, _doctest_agreement(c, pool[c.task_id]))

    built = _each(cands, report, build)
    cands = [c for c in cands if c.task_id in built]

    # 5. the reference must pass every generated test
    problems = [built[c.task_id][1] for c in cands]
    results = sb.judge([(p, Solution(task_id=p.task_id, completion=p.solutions[0],
                                     sample_id="reference")) for p in problems])
    report.reference["programs"] += len(results)
    report.reference["passed"] += sum(r.outcome == "pass" for r in results)
    passed = []
    for c, p, r in zip(cands, problems, results):
        if r.outcome == "pass":
            passed.append((c, built[c.task_id][0], p, r.duration_s))
        else:
            bad = next((t for t, s in zip(p.tests, r.tests) if s != "pass"), "")
            report.drop(c.task_id, "reference fails generated tests",
                        f"{r.outcome} {r.error_type or ''}: {bad[:150]}", c.path, c.lineno)
    t0 = _timed(report, "verify", t0)
    final = _score(passed, muts, guide, pool, kills, sb, st, report)
    _timed(report, "mutation_score", t0)
    return final


def _score(passed, muts, guide, pool, kills, sb, st, report) -> list[Problem]:
    """Judge every mutant against the tests (stage 6); the problems that score enough."""
    pairs, meta = [], []
    for c, rows, p, ref_s in passed:
        limit = min(sb.cfg.time_limit_s, max(st.mutant_time_limit_s, 5 * ref_s))
        index = {r.test: i for i, r in enumerate(pool[c.task_id])}
        chosen_kills = [(r.test, kills[c.task_id][index[r.test]]) for r in rows]
        full = p.model_copy(update={"time_limit_s": limit})
        for m in muts[c.task_id]:
            killer = next((t for t, k in chosen_kills if m.id in k), None)
            prob = full if killer is None else full.model_copy(update={"tests": [killer]})
            pairs.append((prob, Solution(task_id=p.task_id, completion=m.program,
                                         sample_id=m.id)))
            meta.append((p.task_id, m.id, killer is not None))
    results = sb.judge(pairs)
    verdict: dict[tuple, bool] = {}
    retry = []
    for (tid, mid, shortcut), (prob, sol), r in zip(meta, pairs, results):
        verdict[(tid, mid)] = r.outcome != "pass"
        if shortcut and r.outcome == "pass":  # the one test did not reject it here: all
            retry.append((tid, mid, sol))
    if retry:
        by_id = {p.task_id: p for _, _, p, _ in passed}
        again = sb.judge([(by_id[tid], sol) for tid, _, sol in retry])
        for (tid, mid, _), r in zip(retry, again):
            verdict[(tid, mid)] = r.outcome != "pass"
    final = []
    for c, rows, p, _ in passed:
        ids = [m.id for m in muts[c.task_id]]
        killed = [i for i in ids if verdict[(c.task_id, i)]]
        held = [i for i in ids if i not in guide[c.task_id]]
        score = len(killed) / len(ids) if ids else None
        p.metadata["mutation"] = {
            "score": score, "mutants": len(ids), "killed": len(killed),
            "heldout_mutants": len(held),
            "heldout_killed": sum(verdict[(c.task_id, i)] for i in held),
            "guide": sorted(guide[c.task_id]),
            "survivors": [i for i in ids if i not in killed]}
        report.counts["mutants"] += len(ids)
        report.counts["mutants_killed"] += len(killed)
        if st.min_mutation_score > 0 and (score is None or score < st.min_mutation_score):
            report.drop(c.task_id, "weak tests (mutation score)",
                        f"{len(killed)} of {len(ids)} mutants killed", c.path, c.lineno)
            continue
        final.append(p)
    return final
