"""Per-problem time limits that fit the data, set when a problem file is converted.

`rltf data mbpp|apps|humaneval` run each problem's reference programs in the sandbox, once,
before writing the file, and set `time_limit_s` (the per-test limit the executor uses):

* where the dataset gives a limit (a `time_limit` field, as CodeContests has), that limit;
* otherwise the reference's measured time times `--time-factor` (5), never below
  `--time-floor` (4 s, the executor's default limit: never tighter than a problem without a
  limit gets, and a machine busy with other work rarely stretches a fast test that far) nor
  above `--time-cap` (60 s), rounded up to half a second. The measured time is the whole
  run of the reference (all its tests, start-up included), an upper bound on its slowest test;
  of several references (APPS), the slowest that passes counts (up to `--time-refs` of them
  are run), and a reference slower than floor / factor runs twice more and its fastest run
  counts (a busy machine makes single runs slow, never fast).

The references run with the cap (or the dataset's limit) as their limit, so a reference that
times out, fails or raises is found here and reported, one line each, with a summary: never
discovered in training. Such a problem is still written (the data is what it is), with the
outcome in `metadata["reference_outcome"]`; one whose reference timed out gets the cap.
`--time-limits keep` skips all this (the file keeps the dataset's limits, or none: then the
executor's `executor.time_limit_s` applies). What was measured is kept in
`metadata["reference_time_s"]` and `metadata["time_limit_from"]` (dataset | reference |
timeout | default).
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass

from core.records import Problem, Solution

FACTOR = 5.0
FLOOR_S = 4.0
CAP_S = 60.0


def add_arguments(ap: argparse.ArgumentParser) -> None:
    g = ap.add_argument_group("time limits (see problems/time_limits.py)")
    g.add_argument("--time-limits", choices=("measure", "keep"), default="measure",
                   help="measure: run the references and set each problem's limit from their "
                   "time (default); keep: write the dataset's limits, or none")
    g.add_argument("--time-factor", type=float, default=FACTOR,
                   help=f"limit = reference time x this (default {FACTOR:g})")
    g.add_argument("--time-floor", type=float, default=FLOOR_S,
                   help=f"smallest limit, in seconds (default {FLOOR_S:g})")
    g.add_argument("--time-cap", type=float, default=CAP_S,
                   help=f"largest limit, and the references' own limit (default {CAP_S:g})")
    g.add_argument("--time-refs", type=int, default=3,
                   help="references run per problem (default 3)")
    g.add_argument("--workers", type=int, default=2, help="sandboxes running the references")


def dataset_limit(value) -> float | None:
    """A time limit as datasets give it, in seconds: a number, CodeContests' {"seconds",
    "nanos"}, or text such as "2 seconds"; None when absent or not a positive limit."""
    seconds = None
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, dict):
        try:
            seconds = float(value.get("seconds") or 0) + float(value.get("nanos") or 0) / 1e9
        except (TypeError, ValueError):
            return None
    elif isinstance(value, str) and value.strip():
        try:
            seconds = float(value.split()[0])
        except ValueError:
            return None
    return seconds if seconds is not None and math.isfinite(seconds) and seconds > 0 else None


def limit_from(measured_s: float, factor: float = FACTOR, floor_s: float = FLOOR_S,
               cap_s: float = CAP_S) -> float:
    """max(floor, factor x measured), rounded up to 0.5 s, at most the cap."""
    return min(cap_s, max(floor_s, math.ceil(factor * measured_s * 2) / 2))


@dataclass
class Measured:
    """What the references of one problem did."""

    task_id: str
    outcome: str  # the best outcome among its references: pass if any passed
    seconds: float | None  # the slowest passing reference's whole run (else the slowest run)
    message: str = ""


def _rank(outcome: str) -> int:
    return {"pass": 0, "fail": 2, "timeout": 3}.get(outcome, 1)


def measure(problems: list[Problem], workers: int = 2, limit_s: float = CAP_S,
            refs: int = 3, threshold_s: float = 0.0, repeats: int = 2
            ) -> dict[str, Measured]:
    """Run up to `refs` references of each problem (with `limit_s`, or the problem's own
    limit, per test): {task_id: Measured} for every problem that has a reference. A passing
    reference slower than `threshold_s` runs `repeats` more times and its fastest run counts
    (a busy machine makes single runs slow, never fast)."""
    from core.config import ExecutorConfig
    from executor.pool import ExecutorPool

    pairs = []
    for p in problems:
        run_as = p if p.time_limit_s else p.model_copy(update={"time_limit_s": limit_s})
        for i, code in enumerate(p.solutions[:max(1, refs)]):
            pairs.append((run_as, Solution(task_id=p.task_id, completion=code,
                                           sample_id=i)))
    if not pairs:
        return {}
    budget = max(30.0, 2 * max(limit_s, max((p.time_limit_s or 0) for p in problems)))
    cfg = ExecutorConfig(workers=workers, program_budget_s=budget, time_limit_s=limit_s)
    results: list = [None] * len(pairs)
    with ExecutorPool(cfg) as pool:
        for index, result in pool.imap(pairs):
            results[index] = result
        slow = [i for i, r in enumerate(results)
                if r.outcome == "pass" and r.duration_s > threshold_s]
        for _ in range(repeats if slow else 0):
            for j, result in pool.imap([pairs[i] for i in slow]):
                if result.outcome == "pass":
                    i = slow[j]
                    results[i] = min(results[i], result, key=lambda r: r.duration_s)
    runs: dict[str, list] = {}
    for (problem, _), result in zip(pairs, results):
        runs.setdefault(problem.task_id, []).append(result)
    out = {}
    for task_id, rs in runs.items():
        best = min(rs, key=lambda r: _rank(r.outcome))
        passing = [r.duration_s for r in rs if r.outcome == "pass"]
        seconds = max(passing) if passing else max(r.duration_s for r in rs)
        message = "" if best.outcome == "pass" else \
            f"{best.error_type or ''} {best.error_message or ''}".strip()
        out[task_id] = Measured(task_id, best.outcome, seconds, message)
    return out


def apply(problems: list[Problem], args: argparse.Namespace, prog: str) -> list[Problem]:
    """Set every problem's time limit as the module docstring says; report on stderr."""
    if args.time_limits == "keep" or not problems:
        return problems
    print(f"{prog}: running the reference programs to set time limits "
          f"({args.workers} sandboxes)", file=sys.stderr)
    found = measure(problems, args.workers, args.time_cap, args.time_refs,
                    threshold_s=args.time_floor / args.time_factor)
    out, raised, bad = [], [], []
    for p in problems:
        m = found.get(p.task_id)
        meta = dict(p.metadata)
        limit = p.time_limit_s
        if m is None:
            meta["time_limit_from"] = "dataset" if limit else "default"
        else:
            meta["reference_time_s"] = round(m.seconds, 4) if m.seconds is not None else None
            if m.outcome != "pass":
                meta["reference_outcome"] = m.outcome
                bad.append(m)
                print(f"{prog}: {p.task_id}: no reference passes its tests: {m.outcome}"
                      + (f" ({m.message[:200]})" if m.message else ""), file=sys.stderr)
            if limit:
                meta["time_limit_from"] = "dataset"
            elif m.outcome == "timeout":
                limit, meta["time_limit_from"] = args.time_cap, "timeout"
            else:
                limit = limit_from(m.seconds or 0.0, args.time_factor, args.time_floor,
                                   args.time_cap)
                meta["time_limit_from"] = "reference"
                if limit > args.time_floor:
                    raised.append((p.task_id, m.seconds, limit))
        out.append(p.model_copy(update={"time_limit_s": limit, "metadata": meta}))
    for task_id, seconds, limit in raised:
        print(f"{prog}: {task_id}: slow reference ({seconds:.2f} s): time limit {limit:g} s",
              file=sys.stderr)
    timeouts = sum(m.outcome == "timeout" for m in bad)
    print(f"{prog}: time limits: {len(found)} problems measured, {len(raised)} above the "
          f"floor of {args.time_floor:g} s; references not passing: {len(bad)} "
          f"({timeouts} timed out)", file=sys.stderr)
    return out
