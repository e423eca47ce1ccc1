"""All 164 HumanEval canonical solutions pass every test in the sandbox."""

import pytest

from executor.records import Solution
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


@pytest.mark.integration
def test_rltf_exec_process_loads_no_model_libraries(tmp_path):
    """`rltf exec` judges programs only: importing torch (or Ray, DeepSpeed...) would add
    seconds of start-up to every run of it."""
    import json
    import subprocess
    import sys

    from executor.records import write_jsonl

    p = next(p for p in load_humaneval() if p.task_id == "HumanEval/0")
    write_jsonl(tmp_path / "p.jsonl", [p])
    write_jsonl(tmp_path / "s.jsonl", [Solution(task_id=p.task_id, completion=p.solutions[0])])
    script = (
        "import sys\nfrom cluster.cli import main\n"
        f"rc = main(['exec', '--problems', {str(tmp_path / 'p.jsonl')!r}, '--solutions', "
        f"{str(tmp_path / 's.jsonl')!r}, '--out', {str(tmp_path / 'r.jsonl')!r}, '--quiet'])\n"
        "heavy = ('torch', 'transformers', 'deepspeed', 'ray', 'numpy')\n"
        "print(rc, [m for m in heavy if m in sys.modules])\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True).stdout
    assert out.splitlines()[-1] == "0 []"
    assert json.loads((tmp_path / "r.jsonl").read_text())["outcome"] == "pass"
