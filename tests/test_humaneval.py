"""All 164 HumanEval canonical solutions pass every test in the sandbox."""

import pytest

from core.records import Solution
from problems.humaneval import load_humaneval, split_check


def test_split_check_one_test_per_assert():
    setup, tests = split_check(
        "M = 1\n\ndef check(candidate):\n    import math\n    assert candidate(1) == 1\n"
        "    x = 2\n    assert candidate(x) == 2\n    for i in range(3):\n        assert candidate(i) == i\n")
    assert setup == "M = 1\nimport math\n"
    assert tests == ["assert candidate(1) == 1", "x = 2\nassert candidate(x) == 2",
                     "for i in range(3):\n    assert candidate(i) == i"]


@pytest.mark.integration
def test_all_canonical_solutions_pass(worker):
    problems = load_humaneval()
    assert len(problems) == 164
    failures = []
    for p in problems:
        r = worker.run(p, Solution(task_id=p.task_id, completion=p.solutions[0]))
        if r.outcome != "pass" or r.passed != r.total:
            failures.append((p.task_id, r.outcome, r.tests, r.error_message))
    assert not failures
    assert sum(len(p.tests) for p in problems) > 1000


@pytest.mark.integration
def test_wrong_bodies_fail(worker):
    problems = {p.task_id: p for p in load_humaneval()}
    p = problems["HumanEval/53"]  # add(x, y), with 100 random pairs in one test
    r = worker.run(p, Solution(task_id=p.task_id,
                               completion=p.prompt + "    return x + y + (x == 7)\n"))
    assert r.outcome == "fail"
    p = problems["HumanEval/32"]  # find_zero, judged through the program's own poly
    r = worker.run(p, Solution(task_id=p.task_id, completion=p.prompt + "    return 0.0\n"))
    assert r.outcome == "fail"


def test_rltf_exec_loads_no_model_libraries():
    """`rltf exec` judges programs only: importing torch (or Ray, DeepSpeed...) on its way
    would add seconds of start-up to every run of it. (A config error ends the run just after
    the command's imports, before any sandbox starts.)"""
    import subprocess
    import sys

    script = (
        "import sys\nfrom cluster.cli import main\n"
        "rc = main(['exec', '--problems', 'p', '--solutions', 's', '--out', 'o', "
        "'executor.workers=0'])\n"
        "heavy = ('torch', 'transformers', 'deepspeed', 'ray', 'numpy')\n"
        "print(rc, [m for m in heavy if m in sys.modules])\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True)
    assert "executor.workers" in out.stderr
    assert out.stdout.splitlines()[-1] == "2 []"
