"""The built-in task suite, the tiny model, the warm start and `rltf eval`, for real: the
suite's references pass in the sandbox, held-out tasks are new compositions, the tiny model
round-trips through save_pretrained / from_pretrained, SFT lowers the loss, and `rltf eval`
writes a pass@k report."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from problems.synth import (FAMILIES, Spec, generate_suite, pair_of, reference_program,
                            split_pairs)


def _pair(p):
    return tuple(p.metadata["pair"])


def _core(program: str) -> str:
    """A program without its input/output lines: the lines that encode its composition."""
    io = ("def solve", "xs = list(map(int, input", "words = input", "words = s.split",
          "print(", "return ")
    return "".join(line.strip() + "\n" for line in program.splitlines()
                   if not line.strip().startswith(io) and "result" not in line
                   and not line.strip().startswith("for v in"))


def test_suite_is_seeded_and_has_every_family_in_every_split():
    a, b = generate_suite(1200, seed=0), generate_suite(1200, seed=0)
    assert [p.model_dump() for p in a] == [p.model_dump() for p in b]
    c = generate_suite(1200, seed=1)
    assert {p.task_id for p in a} != {p.task_id for p in c}
    assert len({p.task_id for p in a}) == len(a)
    counts = Counter((p.split, p.metadata["family"]) for p in a)
    assert {f for _, f in counts} == set(FAMILIES)
    for split in ("train", "val", "test"):
        assert all(counts[(split, f)] >= 1 for f in FAMILIES)
    test = [p for p in a if p.split == "test"]
    assert len(test) >= 200  # the evaluation's power
    slices = Counter(p.metadata["teacher"] for p in test)
    assert set(slices) == {"reference", "tests"} and min(slices.values()) >= 100
    for p in a:
        assert p.prompt and len(p.tests) >= 4
        # tests-only families carry no reference in training; everything else has one
        teacher_only_tests = p.metadata["teacher"] == "tests" and p.split == "train"
        assert (p.solutions == []) == teacher_only_tests


def test_split_holds_out_compositions_across_families_and_formats():
    suite = generate_suite(1200, seed=0)
    train = [p for p in suite if p.split == "train"]
    by_split = {s: [p for p in suite if p.split == s] for s in ("val", "test")}
    train_pairs = {_pair(p) for p in train}
    # the correct program of every training task, tests-only ones included: RL may reach it
    train_cores = {_core(reference_program(Spec(p.metadata["family"],
                                                tuple(p.metadata["parts"]))))
                   for p in train}
    train_lines = {line for prog in train_cores for line in prog.splitlines()}
    for split, held in by_split.items():
        for p in held:
            # no held-out composition appears in training, in any family or format
            assert _pair(p) not in train_pairs, (split, p.task_id)
            core = _core(p.solutions[0])
            assert core not in train_cores
            if FAMILIES[p.metadata["family"]][2] == "list":
                # the line that encodes (filter, map) is never a training line, verbatim
                (line,) = [ln for ln in core.splitlines() if ln.startswith("values = ")]
                assert line not in train_lines, (p.task_id, line)
            # ...but each of its operation kinds does occur in training
            a, b = _pair(p)
            assert any(q[0] == a for q in train_pairs) and any(q[1] == b for q in train_pairs)
    assert not {_pair(p) for p in by_split["val"]} & {_pair(p) for p in by_split["test"]}
    for kind in ("list", "words"):
        split = split_pairs(kind, 0)
        assert {"train", "val", "test"} == set(split.values())


def test_tokenizer_and_warm_start_see_training_text_only():
    from learner.tiny_model import corpus

    suite = generate_suite(300, seed=0)
    texts = set(corpus(suite))
    held = [p for p in suite if p.split in ("val", "test")]
    for p in held:
        assert not any(p.prompt in t for t in texts)
        assert not set(p.solutions) & texts
    assert any(p.prompt in t for p in suite if p.split == "train" for t in texts)


def test_references_pass_and_typical_mistakes_fail(worker):
    from core.records import Solution

    suite = generate_suite(120, seed=3)
    for p in suite:
        program = reference_program(Spec(p.metadata["family"], tuple(p.metadata["parts"])))
        assert p.solutions in ([], [program])
        r = worker.run(p, Solution(task_id=p.task_id, completion=program))
        assert r.outcome == "pass", (p.task_id, r)
    # a line-local runtime error is located on its line; a wrong answer fails some tests
    call = next(p for p in suite if p.format == "call" and p.solutions)
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
    from core.records import write_jsonl
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
