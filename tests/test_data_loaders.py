"""APPS and MBPP converters: the real fixtures convert, their reference programs pass in the
sandbox, and every kind of broken record is reported with where it is and why, never dropped
silently and never at the cost of the good records."""

import json
import shutil
from pathlib import Path

import pytest

from core.records import Problem, Solution, read_jsonl
from problems import apps, mbpp

FIXTURES = Path(__file__).parent / "fixtures"
APPS_DIR = FIXTURES / "apps"
MBPP_SAMPLE = FIXTURES / "mbpp_sample.jsonl"
APPS_IDS = ["0001", "0111", "2287", "2404", "4184"]


def convert(module, argv, capsys) -> tuple[int, list[Problem], str]:
    """Run a converter's main, without measuring time limits (no sandbox: that is tested in
    test_benchmark_verdicts.py); (exit status, problems written, stderr)."""
    out = Path(argv[argv.index("--out") + 1])
    rc = module.main(argv + ["--time-limits", "keep"])
    err = capsys.readouterr().err
    problems, bad = read_jsonl(out, Problem) if out.exists() else ([], [])
    assert not bad
    return rc, problems, err


def summary_line(err: str) -> str:
    return [line for line in err.splitlines() if "converted" in line][-1]


def hf_row(pid: str) -> dict:
    """A fixture problem in the Hugging Face (codeparrot/apps) layout."""
    d = APPS_DIR / "train" / pid
    meta = json.loads((d / "metadata.json").read_text())
    return {"problem_id": int(pid), "question": (d / "question.txt").read_text(),
            "solutions": (d / "solutions.json").read_text(),
            "input_output": (d / "input_output.json").read_text(),
            "difficulty": meta["difficulty"], "url": meta["url"], "starter_code": ""}


def write_jsonl_rows(path: Path, rows: list) -> None:
    path.write_text("".join(r if isinstance(r, str) else json.dumps(r) + "\n" for r in rows))


# -- APPS: conversion ---------------------------------------------------------------------
def test_apps_directory_layout(tmp_path, capsys):
    rc, problems, err = convert(apps, ["--source", str(APPS_DIR), "--split", "train",
                                       "--out", str(tmp_path / "p.jsonl"),
                                       "--solutions-out", str(tmp_path / "s.jsonl")], capsys)
    assert rc == 0
    assert summary_line(err).endswith("converted 5, skipped 0")
    by_id = {p.task_id: p for p in problems}
    assert sorted(by_id) == [f"apps/train/{i}" for i in APPS_IDS]
    p = by_id["apps/train/0001"]
    assert (p.format, p.fn_name, p.difficulty, p.split) == ("stdio", None, "interview", "train")
    assert p.tests == [{"input": "3\n2 2 3\n4 3 7\n10 1 9\n", "output": "1\n6\n-1\n"}]
    assert p.prompt.startswith("Mikhail walks on a Cartesian plane.")
    assert p.metadata["url"].startswith("https://codeforces.com/")
    assert len(by_id["apps/train/2287"].tests) == 3
    # Codewars outputs come wrapped ([false]) and are unwrapped; LeetCode's are bare already.
    p = by_id["apps/train/4184"]
    assert (p.format, p.fn_name) == ("call", "is_prime")
    assert p.tests[0] == {"input": [1], "output": False}
    assert [t["output"] for t in p.tests] == [False, True, True, False, False, True, True, False]
    p = by_id["apps/train/2404"]
    assert (p.format, p.fn_name) == ("call", "findKthPositive")
    assert p.tests == [{"input": [[2, 3, 4, 7, 11], 5], "output": 9}]
    assert [len(by_id[f"apps/train/{i}"].solutions) for i in APPS_IDS] == [3, 1, 3, 3, 3]
    sols, bad = read_jsonl(tmp_path / "s.jsonl", Solution)
    assert not bad and len(sols) == 13
    assert {s.sample_id for s in sols if s.task_id == "apps/train/0111"} == {"ref-0"}


def test_apps_hf_layout_matches_directory_layout(tmp_path, capsys):
    folder = tmp_path / "hf"
    folder.mkdir()
    src = folder / "train.jsonl"
    write_jsonl_rows(src, [hf_row(pid) for pid in APPS_IDS])
    write_jsonl_rows(folder / "test.jsonl", [{**hf_row("0001"), "problem_id": 7}])
    rc, from_dir, _ = convert(apps, ["--source", str(APPS_DIR), "--split", "train",
                                     "--out", str(tmp_path / "d.jsonl")], capsys)
    assert rc == 0
    for source in (src, folder):  # the file, and a folder holding train.jsonl and test.jsonl
        rc, from_hf, err = convert(apps, ["--source", str(source), "--split", "train",
                                          "--out", str(tmp_path / "h.jsonl")], capsys)
        assert rc == 0 and summary_line(err).endswith("converted 5, skipped 0")
        assert [p.model_dump() for p in from_hf] == [p.model_dump() for p in from_dir]
    rc, from_test, _ = convert(apps, ["--source", str(folder), "--split", "test",
                                      "--out", str(tmp_path / "t.jsonl")], capsys)
    assert rc == 0 and [p.task_id for p in from_test] == ["apps/test/0007"]


def test_apps_stdio_lists_of_lines_and_starter_code():
    rec = {"problem_id": 12, "question": "Add two numbers.", "starter_code": "",
           "input_output": json.dumps({"inputs": [["1 2", "3 4"]], "outputs": [["3", "7"]]})}
    p = apps.convert_apps(rec, "test")
    assert p.tests == [{"input": "1 2\n3 4\n", "output": "3\n7\n"}]
    assert p.task_id == "apps/test/0012" and p.starter_code is None and p.solutions == []
    rec = {"problem_id": 13, "question": "Add.", "starter_code": "def add(a, b):\n    ",
           "url": "https://leetcode.com/problems/x/",
           "input_output": json.dumps({"fn_name": "add", "inputs": [[[1], [2]]],
                                       "outputs": [[3]]})}
    p = apps.convert_apps(rec, "test")  # LeetCode: a one-element list is the real output
    assert p.tests == [{"input": [[1], [2]], "output": [3]}]
    assert p.starter_code == "def add(a, b):\n    "


def test_apps_difficulty_and_limit(tmp_path, capsys):
    out = ["--out", str(tmp_path / "p.jsonl")]
    base = ["--source", str(APPS_DIR), "--split", "train"]
    rc, problems, err = convert(apps, base + out + ["--difficulty", "introductory"], capsys)
    assert rc == 0 and [p.task_id for p in problems] == ["apps/train/2404", "apps/train/4184"]
    assert "(3 not selected)" in summary_line(err)
    rc, problems, _ = convert(apps, base + out + ["--limit", "2"], capsys)
    assert rc == 0 and [p.task_id for p in problems] == ["apps/train/0001", "apps/train/0111"]


# -- APPS: broken records -------------------------------------------------------------------
def _problem_dir(root: Path, name: str, **files: str) -> None:
    d = root / "train" / name
    d.mkdir(parents=True)
    for fname, text in files.items():
        (d / fname.replace("__", ".")).write_text(text)


def test_apps_directory_bad_records_are_reported(tmp_path, capsys):
    root = tmp_path / "apps"
    shutil.copytree(APPS_DIR, root)
    good_io = '{"inputs": ["1\\n"], "outputs": ["1\\n"]}'
    _problem_dir(root, "9001", question__txt="Q", input_output__json='{"inputs": ["1\\n"], ')
    _problem_dir(root, "9002", input_output__json=good_io)
    _problem_dir(root, "9003", question__txt="Q",
                 input_output__json='{"inputs": [], "outputs": []}')
    _problem_dir(root, "9004", question__txt="Q",
                 input_output__json='{"inputs": ["1\\n", "2\\n"], "outputs": ["1\\n"]}')
    _problem_dir(root, "9005", question__txt="Q", input_output__json=good_io,
                 metadata__json='{"difficulty": ')
    _problem_dir(root, "9006", question__txt="Q", input_output__json=good_io,
                 solutions__json='["print(1)"')
    _problem_dir(root, "9007", question__txt="Q", input_output__json='[1, 2]')
    rc, problems, err = convert(apps, ["--source", str(root), "--split", "train",
                                       "--out", str(tmp_path / "p.jsonl")], capsys)
    assert rc == 0
    assert len(problems) == 5 and {p.task_id[-4:] for p in problems} == set(APPS_IDS)
    skipped = {line.split("skipped ", 1)[1].split(":", 1)[0][-4:]: line
               for line in err.splitlines() if ": skipped " in line}
    assert sorted(skipped) == ["9001", "9002", "9003", "9004", "9005", "9006", "9007"]
    assert "invalid JSON in input_output" in skipped["9001"]
    assert "missing question" in skipped["9002"]
    assert "empty tests" in skipped["9003"]
    assert "2 inputs but 1 outputs" in skipped["9004"]
    assert "invalid JSON in metadata" in skipped["9005"]
    assert "invalid JSON in solutions" in skipped["9006"]
    assert "unparseable input_output" in skipped["9007"]
    assert summary_line(err).startswith("rltf data apps: converted 5, skipped 7: ")
    assert "unparseable input_output (2)" in summary_line(err)


def test_apps_hf_bad_records_are_reported_by_line(tmp_path, capsys):
    good = [hf_row(pid) for pid in APPS_IDS]
    rows = [
        good[0],
        {**hf_row("0111"), "problem_id": 9001, "input_output": '{"inputs": ["1\\n"'},
        good[1],
        {k: v for k, v in hf_row("0111").items() if k != "question"} | {"problem_id": 9002},
        {**hf_row("0111"), "problem_id": 9003,
         "input_output": json.dumps({"inputs": [], "outputs": []})},
        "\n",
        good[2],
        {**hf_row("0111"), "problem_id": 9004, "input_output": ""},
        good[3],
        {**hf_row("4184"), "problem_id": 9005,
         "input_output": json.dumps({"fn_name": "f", "inputs": [1], "outputs": [2]})},
        good[4],
    ]
    src = tmp_path / "apps_train.jsonl"
    write_jsonl_rows(src, rows)
    rc, problems, err = convert(apps, ["--source", str(src), "--split", "train",
                                       "--out", str(tmp_path / "p.jsonl")], capsys)
    assert rc == 0 and len(problems) == 5
    assert f"{src}:2 (problem_id 9001): invalid JSON in input_output" in err
    assert f"{src}:4 (problem_id 9002): missing question" in err
    assert f"{src}:5 (problem_id 9003): empty tests" in err
    assert f"{src}:8 (problem_id 9004): missing input_output" in err
    assert f"{src}:10 (problem_id 9005): unparseable input_output" in err
    assert "not a list of arguments" in err
    assert summary_line(err).endswith("converted 5, skipped 5: invalid JSON in input_output (1), "
                                      "missing question (1), empty tests (1), "
                                      "missing input_output (1), unparseable input_output (1)")

    # A line that is not JSON at all makes `datasets` reject the file: it is read line by line.
    src.write_text(src.read_text() + '{"problem_id": 9006, "question": \n')
    rc, problems, err = convert(apps, ["--source", str(src), "--split", "train",
                                       "--out", str(tmp_path / "p.jsonl")], capsys)
    assert rc == 0 and len(problems) == 5
    assert f"{src}:12: invalid JSON line" in err
    assert "skipped 6" in summary_line(err)


def test_apps_nothing_converted_exits_1(tmp_path, capsys):
    src = tmp_path / "bad.jsonl"
    write_jsonl_rows(src, [{"problem_id": 1, "question": "Q", "input_output": "{"}])
    rc, problems, err = convert(apps, ["--source", str(src), "--split", "test",
                                       "--out", str(tmp_path / "p.jsonl")], capsys)
    assert rc == 1 and problems == []
    assert summary_line(err).endswith("converted 0, skipped 1: invalid JSON in input_output (1)")
    rc, problems, err = convert(apps, ["--source", str(tmp_path / "missing.jsonl"), "--split",
                                       "test", "--out", str(tmp_path / "p.jsonl")], capsys)
    assert rc == 1 and "missing.jsonl: no such file or folder" in err


def test_apps_hub_name(tmp_path, capsys, monkeypatch):
    import datasets

    def offline(name, split=None, **kw):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    rc, problems, err = convert(apps, ["--source", "codeparrot/apps", "--split", "test",
                                       "--out", str(tmp_path / "p.jsonl")], capsys)
    assert rc == 1 and problems == []
    assert "'codeparrot/apps' is not a local file or folder" in err and "no network" in err

    seen = {}

    def hub(name, split=None, **kw):
        seen.update(name=name, split=split)
        return [hf_row("4184")]

    monkeypatch.setattr(datasets, "load_dataset", hub)
    rc, problems, err = convert(apps, ["--source", "codeparrot/apps", "--split", "test",
                                       "--out", str(tmp_path / "p.jsonl")], capsys)
    assert rc == 0 and seen == {"name": "codeparrot/apps", "split": "test"}
    assert [p.task_id for p in problems] == ["apps/test/4184"]


# -- MBPP -------------------------------------------------------------------------------------
def test_mbpp_sample(tmp_path, capsys):
    rc, problems, err = convert(mbpp, ["--source", str(MBPP_SAMPLE), "--split", "test",
                                       "--out", str(tmp_path / "p.jsonl"),
                                       "--solutions-out", str(tmp_path / "s.jsonl")], capsys)
    assert rc == 0 and summary_line(err).endswith("converted 4, skipped 0")
    by_id = {p.task_id: p for p in problems}
    assert sorted(by_id) == ["mbpp/11", "mbpp/12", "mbpp/139", "mbpp/17"]
    p = by_id["mbpp/11"]
    assert (p.format, p.entry_point, p.setup, p.split) == ("assert", "remove_Occ", None, "test")
    assert p.prompt == ("Write a python function to remove first and last occurrence of a given "
                        "character from the string.\nYour code should pass this test:\n"
                        'assert remove_Occ("hello","l") == "heo"')
    assert len(p.tests) == 3 and len(p.metadata["challenge_tests"]) == 2
    p = by_id["mbpp/139"]
    assert (p.entry_point, p.setup) == ("circle_circumference", "import math")
    sols, bad = read_jsonl(tmp_path / "s.jsonl", Solution)
    assert not bad and [s.sample_id for s in sols] == ["ref-0"] * 4


def test_mbpp_entry_point():
    assert mbpp.entry_point_of("assert set(similar_elements((3, 4), (5, 4))) == set((4,))",
                               "def similar_elements(a, b):\n    return tuple(set(a) & set(b))") \
        == "similar_elements"
    assert mbpp.entry_point_of("assert math.isclose(area(2), 4.0)", "") == "area"


def test_mbpp_bad_records_are_reported(tmp_path, capsys):
    sample = [json.loads(line) for line in MBPP_SAMPLE.read_text().splitlines()]
    base = sample[2]  # square_perimeter
    rows = [
        sample[0],
        {k: v for k, v in base.items() if k != "text"} | {"task_id": 501},
        {**base, "task_id": 502, "test_list": []},
        sample[1],
        {**base, "task_id": 503, "test_list": ["assert square_perimeter(10) == "]},
        {**base, "task_id": 504, "test_list": ["assert True"]},
        {k: v for k, v in base.items() if k != "code"} | {"task_id": 505},
        {**base, "task_id": 506, "test_setup_code": "from random import *"},
        sample[2],
        sample[3],
    ]
    src = tmp_path / "mbpp.jsonl"
    write_jsonl_rows(src, rows)
    rc, problems, err = convert(mbpp, ["--source", str(src), "--split", "test",
                                       "--out", str(tmp_path / "p.jsonl")], capsys)
    assert rc == 0 and len(problems) == 4  # all ids in the test range: no split by id
    assert f"{src}:2 (task_id 501): missing text" in err
    assert f"{src}:3 (task_id 502): empty tests" in err
    assert f"{src}:5 (task_id 503): unparseable test code: test 0 is not valid Python" in err
    assert f"{src}:6 (task_id 504): no entry point" in err
    assert f"{src}:7 (task_id 505): missing code" in err
    assert f"{src}:8 (task_id 506): unparseable test code" in err
    assert "skipped 6" in summary_line(err)

    # test_list as a JSON string that does not parse; the column's type changes, so the file
    # is read record by record.
    write_jsonl_rows(src, [sample[0], {**base, "task_id": 507, "test_list": '["assert x(1'},
                           "not json\n", sample[1]])
    rc, problems, err = convert(mbpp, ["--source", str(src), "--split", "test",
                                       "--out", str(tmp_path / "p.jsonl")], capsys)
    assert rc == 0 and [p.task_id for p in problems] == ["mbpp/11", "mbpp/12"]
    assert f"{src}:2 (task_id 507): invalid JSON in test_list" in err
    assert f"{src}:3: invalid JSON line" in err
    assert summary_line(err).endswith(
        "converted 2, skipped 2: invalid JSON in test_list (1), invalid JSON line (1)")

    write_jsonl_rows(src, [{**base, "test_list": []}])
    rc, problems, err = convert(mbpp, ["--source", str(src), "--split", "test",
                                       "--out", str(tmp_path / "p.jsonl")], capsys)
    assert rc == 1 and problems == []


def test_mbpp_all_in_one_file_is_split_by_task_id(tmp_path, capsys):
    sample = [json.loads(line) for line in MBPP_SAMPLE.read_text().splitlines()]
    rows = [{**sample[2], "task_id": 2}, sample[0], {**sample[2], "task_id": 601}]
    src = tmp_path / "mbpp.jsonl"
    write_jsonl_rows(src, rows)
    for split, want in [("test", ["mbpp/11"]), ("prompt", ["mbpp/2"]), ("train", ["mbpp/601"]),
                        ("validation", [])]:
        rc, problems, err = convert(mbpp, ["--source", str(src), "--split", split,
                                           "--out", str(tmp_path / "p.jsonl")], capsys)
        assert [p.task_id for p in problems] == want and rc == (0 if want else 1)
        assert "span several MBPP splits" in err
        assert f"({3 - len(want)} not selected)" in summary_line(err)


# -- the reference programs pass in the sandbox ------------------------------------------------
@pytest.mark.integration
def test_apps_reference_solutions_pass(worker, tmp_path, capsys):
    rc, problems, _ = convert(apps, ["--source", str(APPS_DIR), "--split", "train",
                                     "--out", str(tmp_path / "p.jsonl")], capsys)
    assert rc == 0
    verdicts = {}
    for p in problems:
        verdicts[p.task_id] = [worker.run(p, Solution(task_id=p.task_id, completion=s)).outcome
                               for s in p.solutions]
    for task_id, outcomes in verdicts.items():
        assert "pass" in outcomes, (task_id, outcomes)
    # 2287's third program ends early with a top-level `return`, which APPS's harness allows
    # (it wraps programs in a function): run as APPS runs it, it passes too.
    assert all(o == "pass" for outs in verdicts.values() for o in outs), verdicts


@pytest.mark.integration
def test_apps_wrong_programs_fail(worker, tmp_path, capsys):
    rc, problems, _ = convert(apps, ["--source", str(APPS_DIR), "--split", "train",
                                     "--out", str(tmp_path / "p.jsonl")], capsys)
    by_id = {p.task_id: p for p in problems}
    p = by_id["apps/train/4184"]  # the unwrapped outputs: a one-element list is not a bool
    wrapped = "def is_prime(n):\n    return [n > 1 and all(n % d for d in range(2, n))]\n"
    bare = "def is_prime(n):\n    return n > 1 and all(n % d for d in range(2, n))\n"
    assert worker.run(p, Solution(task_id=p.task_id, completion=bare)).outcome == "pass"
    assert worker.run(p, Solution(task_id=p.task_id, completion=wrapped)).outcome == "fail"
    p = by_id["apps/train/0001"]
    r = worker.run(p, Solution(task_id=p.task_id, completion="print(1)\nprint(6)\nprint(1)\n"))
    assert r.outcome == "fail"


@pytest.mark.integration
def test_mbpp_reference_solutions_pass(worker, tmp_path, capsys):
    rc, problems, _ = convert(mbpp, ["--source", str(MBPP_SAMPLE), "--split", "test",
                                     "--out", str(tmp_path / "p.jsonl")], capsys)
    assert rc == 0 and len(problems) == 4
    for p in problems:
        r = worker.run(p, Solution(task_id=p.task_id, completion=p.solutions[0]))
        assert (r.outcome, r.passed, r.total) == ("pass", 3, 3), (p.task_id, r)
        wrong = p.solutions[0] + f"\n\ndef {p.entry_point}(*args):\n    return 0\n"
        assert worker.run(p, Solution(task_id=p.task_id, completion=wrong)).outcome == "fail"
    p = next(p for p in problems if p.metadata.get("challenge_tests"))
    challenge = p.model_copy(update={"tests": p.metadata["challenge_tests"]})
    r = worker.run(challenge, Solution(task_id=p.task_id, completion=p.solutions[0]))
    assert r.outcome == "pass"
