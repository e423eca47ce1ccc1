"""Rewards, scopes and token masks, with the expected numbers worked out in the comments."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

import pytest

from core.config import RewardConfig
from reward import (SampleFeedback, adaptive_reward, baselines, coarse_reward,
                    error_scope, group_rewards, line_token_mask, sequence_reward, token_rewards)


@dataclass
class R:  # the Result fields the rewards read
    outcome: str
    passed: int = 0
    total: int = 4
    error_type: str | None = None
    error_line: int | None = None
    truncated: bool = False


def test_coarse_rewards_are_the_papers_constants():
    assert coarse_reward("pass") == 1.0
    assert coarse_reward("fail") == -0.3
    for o in ("runtime_error", "timeout", "memory_error", "output_limit"):
        assert coarse_reward(o) == -0.6
    assert coarse_reward("syntax_error") == -1.0
    assert coarse_reward("pass", RewardConfig(pass_reward=2.0)) == 2.0
    with pytest.raises(ValueError):
        coarse_reward("weird")


def test_every_executor_outcome_has_a_coarse_class_and_reward():
    # The outcome vocabulary is defined once (core.records.OUTCOMES); the rewards' coarse
    # classes must cover all of it, or a new outcome would raise in the middle of training.
    from core.records import OUTCOMES
    from reward.feedback import OUTCOME_CLASSES, outcome_class

    assert {outcome_class(o) for o in OUTCOMES} == set(OUTCOME_CLASSES)
    assert all(isinstance(coarse_reward(o), float) for o in OUTCOMES)


def test_adaptive_reward():
    # -0.3 + 1.3 * passed / total
    assert adaptive_reward(0, 4) == pytest.approx(-0.3)
    assert adaptive_reward(1, 4) == pytest.approx(-0.3 + 1.3 * 0.25)  # 0.025
    assert adaptive_reward(3, 4) == pytest.approx(0.675)
    assert adaptive_reward(4, 4) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        adaptive_reward(5, 4)


def test_sequence_reward_uses_adaptive_only_for_failures():
    assert sequence_reward(R("fail", passed=2)) == pytest.approx(0.35)  # -0.3 + 1.3 * 0.5
    assert sequence_reward(R("fail", passed=2), RewardConfig(adaptive=False)) == -0.3
    # A runtime error keeps -0.6 however many tests passed before it.
    assert sequence_reward(R("runtime_error", passed=3)) == -0.6


PROGRAM = "def f(x):\n    y = x +\n    return y\n"


@pytest.mark.parametrize("result,expected", [
    (R("pass", passed=4), "ignore"),
    (R("fail", passed=1), "ignore"),
    (R("runtime_error", error_type="NameError", error_line=2), "line"),
    (R("runtime_error", error_type="TypeError", error_line=None), "ignore"),
    (R("memory_error", error_type="MemoryError", error_line=3), "line"),
    (R("timeout", error_type="Timeout", error_line=2), "whole"),
    (R("runtime_error", error_type="RecursionError", error_line=2), "whole"),
    (R("syntax_error", error_type="SyntaxError", error_line=2), "line"),
    # "'(' was never closed" / "unterminated string literal": the executor flags truncation
    (R("syntax_error", error_type="SyntaxError", error_line=1, truncated=True), "whole"),
    # a syntax error on the last code line of the program is a cut-off generation too
    (R("syntax_error", error_type="SyntaxError", error_line=3), "whole"),
])
def test_error_scope(result, expected):
    assert error_scope(result, PROGRAM) == expected


def test_error_scope_with_real_python_311_messages():
    # The executor sets `truncated` structurally; check it on the messages that matter.
    from executor.programtext import compile_program

    cut = "def f(x):\n    return max(x,\n"
    _, err = compile_program(cut)
    assert "never closed" in err["msg"] and err["truncated"]
    s = "def f(x):\n    return 'abc\n"
    _, err = compile_program(s)
    assert "unterminated string literal" in err["msg"]
    # not flagged as incomplete input, but it is on the last line: whole program
    r = R("syntax_error", error_type="SyntaxError", error_line=err["line"],
          truncated=err["truncated"])
    assert error_scope(r, s) == "whole"


# completion: "a = 1\nb = c\nprint(b)\n"   (line 2 raises NameError)
#   line 1 = chars [0, 6)   "a = 1\n"
#   line 2 = chars [6, 12)  "b = c\n"
#   line 3 = chars [12, 21) "print(b)\n"
def test_line_token_mask_basic_first_and_last_line():
    text = "a = 1\nb = c\nprint(b)\n"
    offsets = [(0, 1), (1, 5), (5, 7), (7, 11), (11, 12), (12, 20), (20, 21)]
    # token (5, 7) = "\nb" straddles lines 1 and 2; (11, 12) is line 2's newline
    assert line_token_mask(text, offsets, 2) == [False, False, True, True, True, False, False]
    assert line_token_mask(text, offsets, 1) == [True, True, True, False, False, False, False]
    assert line_token_mask(text, offsets, 3) == [False] * 5 + [True, True]
    assert line_token_mask(text, offsets, 4) == [False] * 7  # no such line
    assert line_token_mask(text, offsets, None) == [False] * 7


def test_line_token_mask_duplicate_line_text():
    # "x = y" occurs on lines 1 and 3; only line 3's tokens are blamed.
    text = "x = y\nz = 1\nx = y\n"
    offsets = [(0, 6), (6, 12), (12, 18)]
    assert line_token_mask(text, offsets, 3) == [False, False, True]


def test_line_token_mask_with_a_byte_level_bpe_tokenizer():
    from tokenizers import ByteLevelBPETokenizer

    corpus = ["def f(x):\n    return x + 1\n", "    y = x\n    return y\n"] * 50
    tok = ByteLevelBPETokenizer()
    tok.train_from_iterator(corpus, vocab_size=300, min_frequency=1, show_progress=False)
    text = "def f(x):\n    y = z\n    return y\n"
    enc = tok.encode(text)
    offsets = enc.offsets
    assert "".join(text[s:e] for s, e in offsets) == text  # offsets tile the text
    straddle = [i for i, (s, e) in enumerate(offsets) if "\n" in text[s:e] and e - s > 1]
    assert straddle, "the tokenizer should merge a newline with indentation"
    mask = line_token_mask(text, offsets, 2)
    lo, hi = 10, 20  # line 2 = "    y = z\n" = chars [10, 20)
    expected = [s < hi and e > lo for s, e in offsets]
    assert mask == expected
    assert "".join(text[s:e] for (s, e), m in zip(offsets, mask) if m).strip().startswith("y = z")


def test_token_rewards_and_baselines():
    # R = 0.35, b = -0.3 (greedy failed with nothing passed): r_t = 0.65, masked 0.65 - 0.3
    assert token_rewards(0.35, 3, baseline=-0.3, mask=[False, True, False]) == \
        pytest.approx([0.65, 0.35, 0.65])
    # rewards 1, -0.3, -0.6 with the second greedy
    assert baselines([1.0, -0.3, -0.6], [False, True, False], "greedy") == [-0.3] * 3
    # leave-one-out: b_1 = (-0.3 - 0.6) / 2 = -0.45; b_2 = (1 - 0.6)/2 = 0.2; b_3 = 0.35
    assert baselines([1.0, -0.3, -0.6], [False] * 3, "leave_one_out") == \
        pytest.approx([-0.45, 0.2, 0.35])
    assert baselines([1.0], [False], "leave_one_out") == [0.0]
    assert baselines([1.0, 2.0], [False, False], "none") == [0.0, 0.0]
    with pytest.raises(ValueError, match="greedy"):
        baselines([1.0], [False], "greedy")


def test_group_rewards_truncated_program_and_prefix_shift():
    prefix = "def f(x):\n"  # 10 characters of prompt code before the generation
    # sample 1: generated "    return y\n" -> NameError on program line 2
    s1 = SampleFeedback(R("runtime_error", error_type="NameError", error_line=2),
                        program=prefix + "    return y\n", prefix_len=10,
                        token_offsets=[(0, 4), (4, 10), (10, 12), (12, 13)])
    # sample 2 (greedy): cut off inside a bracket -> whole program penalised
    s2 = SampleFeedback(R("syntax_error", error_type="SyntaxError", error_line=2,
                          truncated=True), program=prefix + "    return max(x,",
                        prefix_len=10, token_offsets=[(0, 4), (4, 10), (10, 17)],
                        is_greedy=True)
    r1, r2 = group_rewards([s1, s2])
    # R1 = -0.6, R2 = -1.0, b = -1.0 (greedy): r1_t = 0.4 - 0.3 on line-2 tokens (all four)
    assert r1.scope == "line" and r1.token_rewards == pytest.approx([0.1] * 4)
    # R2 - b = 0 ; whole program: 0 - 0.3 on every token
    assert r2.scope == "whole" and r2.token_rewards == pytest.approx([-0.3] * 3)
    r1c, _ = group_rewards([s1, s2], RewardConfig(fine_grained=False))
    assert r1c.token_rewards == pytest.approx([0.4] * 4)


def test_reward_imports_no_heavy_frameworks():
    code = ("import sys, reward; heavy = {'ray', 'deepspeed', 'transformers', 'torch'}; "
            "print(sorted(heavy & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
