import json

from core.records import BadLine, Problem, Result, Solution, read_jsonl, write_jsonl


def test_bad_lines_are_reported_and_good_ones_kept(tmp_path):
    f = tmp_path / "p.jsonl"
    good = {"task_id": "a", "prompt": "p", "format": "stdio",
            "tests": [{"input": "1\n", "output": "1\n"}]}
    lines = [
        json.dumps(good),
        "{not json",
        json.dumps({**good, "task_id": "b", "format": "haskell"}),
        json.dumps({k: v for k, v in good.items() if k != "tests"}),
        "",
        json.dumps({**good, "task_id": "c", "format": "call", "tests": [{"input": [1], "output": 1}]}),
        json.dumps({**good, "task_id": "d", "format": "call", "fn_name": "f",
                    "tests": [{"input": [1], "output": 1}]}),
        json.dumps([1, 2]),
    ]
    f.write_text("\n".join(lines) + "\n")
    recs, bad = read_jsonl(f, Problem)
    assert [r.task_id for r in recs] == ["a", "d"]
    assert [b.line for b in bad] == [2, 3, 4, 6, 8]
    assert all(isinstance(b, BadLine) and str(f) in str(b) for b in bad)
    assert "bad JSON" in bad[0].reason
    assert "format" in bad[1].reason
    assert "tests" in bad[2].reason
    assert "fn_name" in bad[3].reason
    assert "JSON object" in bad[4].reason


def test_round_trip(tmp_path):
    r = Result(task_id="t", sample_id=3, outcome="fail", passed=1, total=2, tests=["pass", "fail"])
    f = tmp_path / "r.jsonl"
    write_jsonl(f, [r])
    (back,), bad = read_jsonl(f, Result)
    assert back == r and not bad
    s = Solution(task_id="t", completion="x = 1\n")
    assert s.sample_id is None
