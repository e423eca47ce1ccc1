"""The executor gives the verdicts of the benchmarks' own harnesses on their real data:
every MBPP reference (all 974 of the original release) passes its tests and its challenge
tests, programs that return the wrong thing never pass, the APPS fixtures' generated programs
get CodeRL's recorded verdicts, and converting a problem file measures time limits and
reports references that do not pass. (HumanEval's canonical solutions: test_humaneval.py.)

Real sandboxes, two workers; about 15-25 s on the 2-core machine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.config import ExecutorConfig
from executor.pool import ExecutorPool
from core.records import Problem, Solution, read_jsonl
from problems import apps, mbpp
from problems.source_records import Tally

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).parent / "fixtures"
MBPP_FILE = FIXTURES / "mbpp" / "mbpp.jsonl"
APPS_DIR = FIXTURES / "apps"
# Under MBPP's own harness (program, setup and tests run as one script) every reference
# passes, so no exception is listed here.
MBPP_WRONG_REFERENCES: dict[str, str] = {}
# Where CodeRL's harness and Python disagree about a program that is wrong either way:
# 4184 #14 raises NameError while it loads; CodeRL's harness loads call-based programs in
# its "compile" step, so it counts any error there as a compile error (-2). Here it is what
# Python says: a runtime error (NameError, line 31).
CODERL_DIFFERENCES = {("apps/train/4184", 14): ("compile", "runtime_error")}


def _mbpp_problems() -> list[Problem]:
    problems = []
    for split in mbpp.SPLITS:
        problems += mbpp.load_mbpp(str(MBPP_FILE), split, Tally("mbpp"))
    assert len(problems) == 974
    return problems


def _judge(pairs, **cfg) -> list:
    with ExecutorPool(ExecutorConfig(workers=2, **cfg)) as pool:
        return pool.run(pairs)


def test_every_mbpp_reference_passes_and_wrong_programs_do_not():
    problems = _mbpp_problems()
    refs = [(p, Solution(task_id=p.task_id, completion=p.solutions[0], sample_id="ref"))
            for p in problems]
    challenge = [(p.model_copy(update={"tests": p.metadata["challenge_tests"]}), s)
                 for p, s in refs if p.metadata.get("challenge_tests")]
    # The reference with its entry point replaced by one returning a bare object: no test
    # of MBPP may accept it.
    wrong = [(p, Solution(task_id=p.task_id, sample_id="wrong", completion=p.solutions[0]
                          + f"\n\ndef {p.entry_point}(*args, **kwargs):\n    return object()\n"))
             for p in problems]
    # Generous limits here: the time limits themselves are tested below.
    results = _judge(refs + challenge + wrong, time_limit_s=60.0, program_budget_s=120.0)
    not_passing = {p.task_id: (r.outcome, r.error_type, r.error_message)
                   for (p, _), r in zip(refs + challenge, results) if r.outcome != "pass"}
    assert not_passing.keys() == MBPP_WRONG_REFERENCES.keys(), not_passing
    assert len(challenge) == 11
    wrong_results = results[len(refs) + len(challenge):]
    passed = [p.task_id for (p, _), r in zip(wrong, wrong_results) if r.outcome == "pass"]
    assert passed == []
    # None of them is blamed on a judge that cannot compare: they fail, or (912, which calls
    # int() on the result) raise, as under MBPP's harness.
    assert {r.outcome for r in wrong_results} <= {"fail", "runtime_error"}


def test_apps_generated_programs_get_coderls_verdicts():
    problems = apps.load_apps(str(APPS_DIR), "train", Tally("apps"))
    pairs, recorded = [], []
    for p in problems:
        gen = json.loads((APPS_DIR / "train" / p.task_id.split("/")[-1]
                          / "gen_solutions.json").read_text())
        for i, g in enumerate(gen):
            pairs.append((p, Solution(task_id=p.task_id, completion=g["code"], sample_id=i)))
            recorded.append(g["result"])
    assert len(pairs) == 83
    # CodeRL's timeouts are programs that never finish: a short limit gives the same verdict.
    results = _judge(pairs, time_limit_s=1.0, program_budget_s=6.0)
    coderl = {True: "pass", False: "fail", -1: "runtime", -2: "compile"}
    ours_as_coderl = {"pass": "pass", "fail": "fail", "runtime_error": "runtime",
                      "timeout": "runtime", "memory_error": "runtime",
                      "output_limit": "runtime", "syntax_error": "compile"}
    differences = {}
    for (p, s), r, verdict in zip(pairs, results, recorded):
        if ours_as_coderl[r.outcome] != coderl[verdict]:
            differences[(p.task_id, s.sample_id)] = (coderl[verdict], r.outcome)
    assert differences == CODERL_DIFFERENCES
    # 2287 #2 ends with a top-level `return` (APPS's harness runs programs as a function
    # body): it runs, and fails as CodeRL says, with an IndexError.
    r = next(r for (p, s), r in zip(pairs, results)
             if p.task_id == "apps/train/2287" and s.sample_id == 2)
    assert (r.outcome, r.error_type) == ("runtime_error", "IndexError")


def test_converting_measures_time_limits_and_reports_bad_references(tmp_path, capsys):
    def record(task_id, code, tests):
        return {"task_id": task_id, "text": f"task {task_id}", "code": code,
                "test_list": tests, "test_setup_code": "", "challenge_test_list": []}

    rows = [
        record(11, "def f(x):\n    return x + 1\n", ["assert f(1) == 2"]),
        record(12, "import time\ndef f(x):\n    time.sleep(0.8)\n    return x\n",
               ["assert f(1) == 1"]),
        record(13, "def f(x):\n    while True:\n        pass\n", ["assert f(1) == 1"]),
        record(14, "def f(x):\n    return x\n", ["assert f(1) == 2"]),
    ]
    src = tmp_path / "mbpp.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "p.jsonl"
    rc = mbpp.main(["--source", str(src), "--split", "test", "--out", str(out),
                    "--time-cap", "2"])
    err = capsys.readouterr().err
    problems, bad = read_jsonl(out, Problem)
    assert rc == 0 and not bad and len(problems) == 4  # bad references are kept, reported
    by_id = {p.task_id: p for p in problems}
    # Fast: the floor; 0.8 s: 5 x 0.8 = 4 s at least, but the cap is 2 s here.
    assert by_id["mbpp/11"].time_limit_s == 2.0 and by_id["mbpp/12"].time_limit_s == 2.0
    assert by_id["mbpp/12"].metadata["reference_time_s"] >= 0.8
    assert by_id["mbpp/13"].metadata["reference_outcome"] == "timeout"
    assert by_id["mbpp/13"].metadata["time_limit_from"] == "timeout"
    assert by_id["mbpp/14"].metadata["reference_outcome"] == "fail"
    assert "mbpp/13: no reference passes its tests: timeout" in err
    assert "mbpp/14: no reference passes its tests: fail" in err
    assert "references not passing: 2 (1 timed out)" in err
    src.write_text("".join(json.dumps(r) + "\n" for r in rows[:2]))
    rc = mbpp.main(["--source", str(src), "--split", "test", "--out", str(out),
                    "--time-floor", "1", "--time-cap", "60"])
    err = capsys.readouterr().err
    by_id = {p.task_id: p for p in read_jsonl(out, Problem)[0]}
    assert by_id["mbpp/11"].time_limit_s == 1.0
    assert 4.0 <= by_id["mbpp/12"].time_limit_s <= 60.0
    assert "mbpp/12: slow reference" in err
