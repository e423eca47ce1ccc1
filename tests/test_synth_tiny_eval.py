"""The built-in task suite, the tiny model, the warm start and `rltf eval`, for real: the
suite's references pass in the sandbox, held-out tasks are new compositions, the tiny model
round-trips through save_pretrained / from_pretrained, SFT lowers the loss, and `rltf eval`
writes a pass@k report."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from problems.synth import FILTERS, MAPS, generate_suite


def _pair(p):
    a, b = int(p.metadata["parts"][0]), int(p.metadata["parts"][1])
    if p.format == "assert":
        return ("assert", a, b)
    return (p.format, FILTERS[a][1], MAPS[b][1])


def test_suite_is_seeded_split_by_composition_and_mixes_formats():
    a, b = generate_suite(400, seed=0), generate_suite(400, seed=0)
    assert [p.model_dump() for p in a] == [p.model_dump() for p in b]
    c = generate_suite(400, seed=1)
    assert {p.task_id for p in a} != {p.task_id for p in c}
    assert len({p.task_id for p in a}) == len(a)
    formats = Counter(p.format for p in a)
    assert set(formats) == {"call", "stdio", "assert"}
    assert formats["call"] > formats["assert"] and formats["stdio"] > formats["assert"]
    train = [p for p in a if p.split == "train"]
    held = [p for p in a if p.split == "heldout"]
    assert 0.08 * len(a) < len(held) < 0.25 * len(a)
    # a held-out task combines primitives never seen together in training...
    assert not {_pair(p) for p in held} & {_pair(p) for p in train}
    # ...but each of its primitives does occur in training
    for p in held:
        key = _pair(p)
        assert any(_pair(q)[:2] == key[:2] for q in train if q.format == p.format)
        assert any((_pair(q)[0], _pair(q)[2]) == (key[0], key[2])
                   for q in train if q.format == p.format)
    for p in a:
        assert p.prompt and p.solutions and len(p.tests) >= 4


def test_references_pass_and_typical_mistakes_fail(worker):
    from executor.records import Solution

    suite = generate_suite(120, seed=3)
    for p in suite:
        r = worker.run(p, Solution(task_id=p.task_id, completion=p.solutions[0]))
        assert r.outcome == "pass", (p.task_id, r)
    # a line-local runtime error is located on its line; a wrong answer fails some tests
    call = next(p for p in suite if p.format == "call")
    broken = call.solutions[0].replace("return", "return undefined_name +", 1)
    r = worker.run(call, Solution(task_id=call.task_id, completion=broken))
    assert r.outcome == "runtime_error" and r.error_type == "NameError" and r.error_line
    wrong = "def solve(xs):\n    return 0\n"
    r = worker.run(call, Solution(task_id=call.task_id, completion=wrong))
    assert r.outcome in ("fail", "pass") and r.total == len(call.tests)


def test_tiny_model_round_trip_and_warm_start_lowers_the_loss(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from learner.sft import SFTSettings, run_sft
    from learner.tiny_model import TinyModelSpec, build_tiny_model

    suite = generate_suite(60, seed=0)
    spec = TinyModelSpec(n_layer=2, n_embd=64, n_head=2, vocab_size=400)
    base = build_tiny_model(suite, tmp_path / "base", spec)
    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base)
    assert model.config.vocab_size == len(tok) and tok.eos_token and tok.pad_token
    assert model.config.activation_function == "gelu_pytorch_tanh"  # the fused kernel
    text = suite[0].solutions[0]
    assert tok.decode(tok(text)["input_ids"]) == text  # byte-level BPE is lossless
    info = run_sft(base, suite, str(tmp_path / "warm"),
                   SFTSettings(steps=40, batch_size=8, lr=3e-3, warmup=5, log_every=1000),
                   log=None)
    assert info["final_loss"] < 0.6 * info["first_loss"]
    assert AutoModelForCausalLM.from_pretrained(str(tmp_path / "warm")) is not None
    assert json.loads((tmp_path / "warm" / "rltf_sft.json").read_text())["steps"] == 40


def test_rltf_eval_writes_a_passk_report(tmp_path):
    from executor.records import write_jsonl
    from evaluation.run import main as eval_main
    from learner.tiny_model import TinyModelSpec, build_tiny_model

    suite = generate_suite(40, seed=0)
    path = tmp_path / "p.jsonl"
    write_jsonl(path, suite[:6])
    model = build_tiny_model(suite, tmp_path / "m", TinyModelSpec(n_layer=1, n_embd=32,
                                                                   n_head=2, vocab_size=300))
    out = tmp_path / "report.json"
    rc = eval_main(["--model", model, "--problems", str(path), "--n", "3", "--k", "1,2",
                    "--max-new-tokens", "16", "--out", str(out), "executor.workers=1"])
    assert rc == 0
    rep = json.loads(out.read_text())
    assert set(rep["overall"]) == {"pass@1", "pass@2"}
    assert rep["problems"] == 6 and rep["n"] == 3
    assert sum(rep["outcomes"].values()) == 18  # 6 problems x 3 samples, each judged once
