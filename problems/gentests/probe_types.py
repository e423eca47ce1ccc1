"""Runtime probing: types for the parameters no static source typed, tried in the sandbox.

    outcome = probe_types(cands, record, seed=0)   # {task_id: ProbeOutcome}

For each function, hypotheses assign a type to every unknown parameter; each hypothesis is
tried on a few generated inputs (`per_hypothesis`), all of a function's hypotheses in one
sandboxed run (inputs interleaved, so a run cut short by its time budget hurts every
hypothesis alike). A hypothesis is *acceptable* when the calls it made raised TypeError or
AttributeError (not about None) at most half the time and at least one returned; among acceptable ones the
best is the one where most calls return, then the most plausible by the parameters' names
(`n`, `count` int; `s`, `text` str; `arr`, `nums` list of int; `test_tup` tuple; `matrix`
list of lists...), then the most calls returning.

Round 1 tries each parameter's most plausible type, every parameter at one common type, and
each parameter's next two types; later rounds (up to `rounds`) change one parameter at a time
around the best so far, while that keeps improving (among hypotheses that still fail, one
whose type errors come from later lines counts as better: `arr.sort()` passed, `b.sort()`
did not). A function with no acceptable hypothesis
is dropped as "parameter types unknown".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from problems.gentests.specs import Spec
from problems.gentests.rows import make_inputs

INT, FLOAT, STR, BOOL, BYTES = (Spec(k) for k in ("int", "float", "str", "bool", "bytes"))
LIST_INT, LIST_STR, LIST_FLOAT = (Spec("list", (s,)) for s in (INT, STR, FLOAT))
TUPLE_INT, TUPLE_STR = Spec("tuplevar", (INT,)), Spec("tuplevar", (STR,))
LIST_LIST_INT = Spec("list", (LIST_INT,))
LIST_PAIRS = Spec("list", (Spec("tuple", (INT, INT)),))
DICT_STR_INT, DICT_STR_LIST = Spec("dict", (STR, INT)), Spec("dict", (STR, LIST_INT))
DICT_INT_INT = Spec("dict", (INT, INT))
GENERIC = (INT, STR, LIST_INT, FLOAT, LIST_STR, TUPLE_INT, LIST_LIST_INT, DICT_STR_INT,
           LIST_PAIRS, BOOL, LIST_FLOAT, TUPLE_STR, BYTES, DICT_STR_LIST)
TYPE_ERRORS = ("TypeError", "AttributeError")

# Names (matched in this order) and the types they suggest, most plausible first.
_PRIORS: list[tuple[re.Pattern, tuple[Spec, ...]]] = [(re.compile(p, re.I), t) for p, t in [
    (r"^(flag|reverse|strict|verbose|is_\w+|has_\w+|use_\w+|allow_\w+)$", (BOOL,)),
    (r"tup|tuple", (TUPLE_INT, TUPLE_STR, Spec("tuple", (INT, INT)))),
    (r"dict|^d\d?$|^dic|mapping|^map$", (DICT_STR_INT, DICT_STR_LIST, DICT_INT_INT)),
    (r"matrix|grid|^mat\d?$|board|cost|table|2d|^m\d?$", (LIST_LIST_INT, INT)),
    (r"words|strings|names|lines|strs|str_?list|tokens|sentences", (LIST_STR,)),
    (r"pairs|edges|intervals|points|test_list|coords", (LIST_PAIRS, LIST_INT, LIST_LIST_INT)),
    (r"arr|array|nums|numbers|lst|list|^l\d*$|^xs$|^ys$|items|seq|values|elements|^data$|"
     r"iterable|heap|stack|queue|vec|^a\d$|digits$|weights|scores|prices", (LIST_INT, LIST_STR)),
    (r"^(s|s\d|st|str\d*|text\d*|txt|word|sentence|name|char|chars|ch|c|pattern|pat|line|"
     r"prefix|suffix|sep|delim\w*|url|email|msg|message|sub\w*|title|path|key|letter|"
     r"string\d*|test_str\w*|\w*_str|\w*string)$", (STR,)),
    (r"^(n|m|k|i|j|x|y|z|a|b|num\d*|number\d*|count|cnt|size|length|len|idx|index|pos|start|"
     r"end|stop|step|width|height|limit|base|year|month|day|bits?|power|exp|low|high|lo|hi|"
     r"left|right|val|value|target|total|amount|times|depth|level|row|col|column|digit|"
     r"degree|deg|[a-z]\d|\w*_num|num_\w*|n_\w*|max\w*|min\w*)$", (INT, FLOAT)),
    (r"^(f|r|radius|rate|ratio|prob\w*|temp\w*|celsius|fahrenheit|h|w|angle|theta|float\w*|"
     r"real|imag|weight|alpha|beta|eps\w*|tol\w*|[xyz]\d?)$", (FLOAT, INT)),
]]


def plausible(name: str) -> list[Spec]:
    """Types to try for a parameter, most plausible first (by its name, then GENERIC)."""
    first: list[Spec] = []
    for pattern, specs in _PRIORS:
        if pattern.search(name):
            first += [s for s in specs if s not in first]
            break
    return first + [s for s in GENERIC if s not in first]


@dataclass
class ProbeOutcome:
    specs: dict[str, Spec] | None  # None: no acceptable hypothesis
    detail: str
    runs: int  # sandboxed runs spent


def type_error(o) -> bool:
    """A TypeError or AttributeError not about None (arguments are never None here, so
    `'NoneType' object has no attribute ...` comes from the function's own logic)."""
    err = o.error or {}
    return o.status == "error" and err.get("type") in TYPE_ERRORS and \
        "NoneType" not in str(err.get("msg", ""))


def _score(obs: list) -> tuple[int, int, int, float]:
    """(calls that returned, calls that raised a type error, calls that ran, the mean line
    of those errors: a hypothesis whose calls fail later in the code got further)."""
    ok = sum(o.ok or o.status == "unserialisable" for o in obs)
    lines = [(o.error or {}).get("line") or 0 for o in obs if type_error(o)]
    ran = sum(o.status in ("ok", "error", "unserialisable") for o in obs)
    return ok, len(lines), ran, sum(lines) / len(lines) if lines else 0.0


def _key(stats: tuple, rank: int) -> tuple:
    ok, bad, ran, depth = stats
    acceptable = ran > 0 and ok > 0 and 2 * bad <= ran
    return (acceptable, acceptable and 2 * ok > ran, -rank if acceptable else 0, ok, -bad,
            depth)


def _first_round(unknown: list[str], options: dict[str, list[Spec]]) -> list[dict]:
    top = {p: options[p][0] for p in unknown}
    hyps = [top] + [{p: t for p in unknown} for t in GENERIC[:6]]
    for p in unknown:
        hyps += [{**top, p: alt} for alt in options[p][1:3]]
    return hyps


def _around(best: dict, unknown: list[str], options: dict[str, list[Spec]], tried: set
            ) -> list[dict]:
    return [h for p in unknown for t in options[p][:9]
            if (h := {**best, p: t}) and _sig(h) not in tried]


def _sig(h: dict) -> str:
    return repr(sorted((k, str(v)) for k, v in h.items()))


def probe_types(cands, record, seed: int = 0, per_hypothesis: int = 6, max_hypotheses: int = 16,
                rounds: int = 4, time_limit_s: float = 0.5) -> dict[str, ProbeOutcome]:
    """Types for every candidate's unknown parameters. `record(jobs, time_limit_s)` runs
    `problems.gentests.probe.ProbeJob`s in the sandbox: {key: (worker index, observations)}."""
    from problems.gentests.probe import ProbeJob

    state = {}
    for c in cands:
        unknown = [p.name for p in c.unknown]
        options = {p: plausible(p) for p in unknown}
        state[c.task_id] = {"cand": c, "unknown": unknown, "options": options, "tried": set(),
                            "best": None, "todo": _first_round(unknown, options), "runs": 0}
    # best: (hypothesis, _score(...), rank by names)
    for _ in range(rounds):
        jobs, plans = [], {}
        for tid, st in state.items():
            hyps, seen = [], set()
            for h in st["todo"]:
                if _sig(h) not in st["tried"] and _sig(h) not in seen:
                    seen.add(_sig(h))
                    hyps.append(h)
            hyps = hyps[:max_hypotheses]
            st["todo"] = []
            if not hyps or "failed" in st:
                continue
            try:
                rows = [make_inputs(st["cand"], seed, per_hypothesis, specs=h) for h in hyps]
            except Exception as exc:  # noqa: BLE001 - the function is dropped with the reason
                st["failed"] = f"inputs could not be made: {type(exc).__name__}: {exc}"
                continue
            order = [(i, k) for k in range(per_hypothesis) for i in range(len(hyps))
                     if k < len(rows[i])]  # interleaved
            plans[tid] = (hyps, order)
            jobs.append(ProbeJob(tid, st["cand"].solution, st["cand"].name,
                                 [rows[i][k] for i, k in order]))
        if not jobs:
            break
        results = record(jobs, time_limit_s)
        for tid, (hyps, order) in plans.items():
            st = state[tid]
            st["runs"] += 1
            obs = results[tid][1]
            if any(o.status == "load_error" for o in obs):
                err = next(o.error for o in obs if o.status == "load_error") or {}
                st["failed"] = f"the program does not load: {err.get('type')}: {err.get('msg')}"
                continue
            per: list[list] = [[] for _ in hyps]
            for (i, _), o in zip(order, obs):
                per[i].append(o)
            improved = False
            for h, o in zip(hyps, per):
                st["tried"].add(_sig(h))
                stats = _score(o)
                rank = sum(st["options"][p].index(h[p]) for p in st["unknown"])
                if st["best"] is None or _key(stats, rank) > _key(st["best"][1], st["best"][2]):
                    st["best"], improved = (h, stats, rank), True
            ok, bad, ran, _ = st["best"][1]
            if improved and (bad or 2 * ok <= ran):  # not yet clean: change one at a time
                st["todo"] = _around(st["best"][0], st["unknown"], st["options"], st["tried"])
    out = {}
    for tid, st in state.items():
        best = st["best"]
        if best is None:
            out[tid] = ProbeOutcome(None, st.get("failed", "nothing ran"), st["runs"])
            continue
        h, (ok, bad, ran, _), _ = best
        desc = ", ".join(f"{p}: {h[p]}" for p in st["unknown"])
        if _key(best[1], 0)[0]:
            out[tid] = ProbeOutcome(h, f"{desc} ({ok}/{ran} calls returned)", st["runs"])
        else:
            out[tid] = ProbeOutcome(None, f"every type tried raised TypeError/AttributeError "
                                    f"on most inputs, or nothing returned (best {desc}: {ok} "
                                    f"of {ran} returned, {bad} type errors)", st["runs"])
    return out
