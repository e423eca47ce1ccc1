"""Corpus scale (`rltf gen-tests`): resuming an interrupted run, the Hugging Face datasets
folder that `rltf train` and `datasets.load_from_disk` read, and the sandboxes as Ray actors.

The datasets round trip needs no sandbox (about 1 s). Tests marked integration run real
sandboxes: resuming about 10 s, the Ray run about 30 s (one local Ray instance, loopback).
"""

from __future__ import annotations

import json
import textwrap

import pytest

from core.records import Problem
from problems.gentests.dataset import read_problems, save_hf
from problems.gentests.resume import WorkDirMismatch
from problems.gentests.generate import GenSettings, generate

SOURCES = {
    "shapes.py": '''\
        def area(w, h):
            """Area of a w by h rectangle.

            >>> area(2, 3)
            6
            """
            return w * h


        def grade(score):
            """A letter for a score out of 100 (int)."""
            if score >= 90:
                return "A"
            if score >= 75:
                return "B"
            return "C"
        ''',
    "words.py": '''\
        def initials(name):
            """The upper-case initials of a name, e.g. 'ada lovelace' -> 'AL'.

            :param str name: words separated by spaces
            """
            return "".join(w[0].upper() for w in name.split())


        def count_vowels(text):
            """How many vowels text has."""
            return sum(c in "aeiou" for c in text.lower())
        ''',
}


def problem(i: int, **extra) -> Problem:
    return Problem(task_id=f"t{i}", prompt=f"def f{i}(x):\n", format="assert",
                   entry_point=f"f{i}", tests=[f"assert candidate({i}) == {i}"],
                   solutions=[f"def f{i}(x):\n    return x\n"], **extra)


def test_datasets_folder_round_trip_and_rltf_train_reads_it(tmp_path):
    import datasets

    from core.config_reading import load_config
    from cluster.train_cmd import load_problems

    probs = [problem(1, metadata={"mutation": {"score": 0.5}, "type_sources": {"x": "probe"}}),
             problem(2, setup="import math", time_limit_s=2.0)]
    save_hf(probs, tmp_path / "hf")
    ds = datasets.load_from_disk(str(tmp_path / "hf"))
    assert ds.num_rows == 2 and ds[0]["tests"] == ["assert candidate(1) == 1"]
    assert json.loads(ds[0]["metadata"])["mutation"]["score"] == 0.5
    back, bad = read_problems(tmp_path / "hf")
    assert not bad and back == probs
    (tmp_path / "held.jsonl").write_text(problem(3).model_dump_json() + "\n")
    cfg = load_config(None, ["data.source=jsonl", f"data.train_file={tmp_path / 'hf'}",
                             f"data.heldout_file={tmp_path / 'held.jsonl'}"])
    loaded = load_problems(cfg)
    assert [p.task_id for p in loaded["train"]] == ["t1", "t2"]
    assert [p.task_id for p in loaded["test"]] == ["t3"] and loaded["val"] == []
    with pytest.raises(ValueError, match="datasets folder"):
        read_problems(tmp_path)  # a folder that is not one


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    for name, text in SOURCES.items():
        (root / name).write_text(textwrap.dedent(text))
    return root


@pytest.mark.integration
def test_an_interrupted_run_resumes_where_it_stopped(corpus, tmp_path):
    st = GenSettings(seed=1, per_function=5, pool_factor=2, chunk_size=1)
    work = tmp_path / "work"
    done = []

    def stop_after_two(n):
        done.append(n)
        if len(done) == 2:
            raise KeyboardInterrupt  # as Ctrl-C after the second chunk

    with pytest.raises(KeyboardInterrupt):
        generate([str(corpus)], st, work_dir=work, progress=stop_after_two)
    assert len(list(work.glob("chunk-*.json"))) == 2
    problems, report = generate([str(corpus)], st, work_dir=work)
    assert report.counts["chunks_resumed"] == 2
    assert sorted(p.task_id for p in problems) == ["shapes.area", "shapes.grade",
                                                   "words.count_vowels", "words.initials"]
    fresh, _ = generate([str(corpus)], st, work_dir=tmp_path / "other")
    assert [p.model_dump() for p in fresh] == [p.model_dump() for p in problems]
    with pytest.raises(WorkDirMismatch, match="--fresh"):
        generate([str(corpus)], GenSettings(seed=2, chunk_size=1), work_dir=work)


@pytest.mark.integration
def test_cli_writes_jsonl_and_a_datasets_folder(corpus, tmp_path):
    import datasets

    from cluster.cli import main

    out, hf, rep = tmp_path / "p.jsonl", tmp_path / "hf", tmp_path / "r.json"
    assert main(["gen-tests", "--source", str(corpus / "words.py"), "--out", str(out),
                 "--hf-out", str(hf), "--report", str(rep), "--per-function", "4",
                 "--min-mutation-score", "0.2", "--quiet"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["task_id"] for r in rows] == ["words.initials", "words.count_vowels"]
    assert rows[0]["metadata"]["type_sources"] == {"name": "docstring"}
    assert datasets.load_from_disk(str(hf))["task_id"] == ["words.initials", "words.count_vowels"]
    report = json.loads(rep.read_text())
    assert report["kept_by_type_source"] == {"docstring": 1, "probe": 1}
    assert report["type_sources"] == {"words.initials": {"name": "docstring"},
                                      "words.count_vowels": {"text": "probe"}}
    assert main(["gen-tests", "--source", str(corpus), "--out", str(out),
                 "--min-mutation-score", "2"]) == 2  # a clear refusal, not a traceback


@pytest.fixture(scope="module")
def local_ray():
    import ray

    ray.init(num_cpus=4, _node_ip_address="127.0.0.1", include_dashboard=False,
             log_to_driver=False, namespace="rltf-gen-tests-test")
    yield ray
    ray.shutdown()


@pytest.mark.integration
def test_sandboxes_as_ray_actors_give_the_same_problems(corpus, tmp_path, local_ray):
    from core.config import ExecutorConfig
    from cluster.gentests_sandboxes import RaySandboxes

    st = GenSettings(seed=3, per_function=5, pool_factor=2)
    local, _ = generate([str(corpus / "shapes.py")], st, executor_cfg=ExecutorConfig(workers=2))
    remote, report = generate([str(corpus / "shapes.py")], st,
                              executor_cfg=ExecutorConfig(workers=2), sandboxes=RaySandboxes)
    assert [p.model_dump() for p in remote] == [p.model_dump() for p in local]
    assert report.reference["passed"] == report.reference["programs"] == 2
    assert not [a for a in local_ray.util.list_named_actors() if a.startswith("rltf-gen")]
