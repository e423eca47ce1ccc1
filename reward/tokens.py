"""From program-level feedback to one reward per generated token.

Token positions come from the tokenizer's character offsets (never from decoding prefixes),
so byte-level BPE tokens that span a newline, and lines that occur twice, map exactly.

Per token t of a sample with sequence reward R, baseline b and fine-grained mask m:

    r_t = (R - b) - penalty * m_t

i.e. the paper's relative return on every token, plus the fine-grained penalty on the tokens
blamed for the error (the error line, or all tokens for a whole-program error). Baselines:
"greedy" (the reward of the greedy sample of the same prompt; the paper's relative returns),
"leave_one_out" (the mean reward of the other samples of the same prompt), or "none".

A generation that ended on EOS is judged without it, but trained with it as its last token:
the driver gives it an empty span at the end of the completion, so it lies on no error line,
and gets (R - b), minus the penalty when the whole program is blamed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from reward.feedback import DEFAULT, ResultLike, RewardConfig, error_scope, sequence_reward

Offsets = Sequence[tuple[int, int]]


def line_span(text: str, line: int) -> tuple[int, int] | None:
    """[start, end) character span of 1-based `line`, its newline included; None if absent."""
    if line < 1:
        return None
    start = 0
    for _ in range(line - 1):
        nl = text.find("\n", start)
        if nl < 0:
            return None
        start = nl + 1
    if start > len(text) or (start == len(text) and line > 1):
        return None
    nl = text.find("\n", start)
    return start, (len(text) if nl < 0 else nl + 1)


def line_token_mask(completion: str, token_offsets: Offsets, error_line: int | None
                    ) -> list[bool]:
    """True for each token whose characters overlap line `error_line` of `completion`.

    `token_offsets[i] = (start, end)` is token i's character span in `completion` (end
    exclusive). A token spanning a newline overlaps both lines; an empty span overlaps nothing.
    """
    span = line_span(completion, error_line) if error_line else None
    if span is None:
        return [False] * len(token_offsets)
    lo, hi = span
    return [s < hi and e > lo and e > s for s, e in token_offsets]


def token_rewards(reward: float, n_tokens: int, baseline: float = 0.0,
                  mask: Sequence[bool] | None = None, penalty: float = 0.3) -> list[float]:
    """r_t = (reward - baseline) - penalty * mask_t for each of `n_tokens` tokens."""
    if mask is not None and len(mask) != n_tokens:
        raise ValueError(f"mask has {len(mask)} entries for {n_tokens} tokens")
    base = reward - baseline
    if mask is None:
        return [base] * n_tokens
    return [base - penalty if m else base for m in mask]


def baselines(rewards: Sequence[float], greedy: Sequence[bool], mode: str) -> list[float]:
    """One baseline per sample of the same prompt."""
    n = len(rewards)
    if mode == "none":
        return [0.0] * n
    if mode == "greedy":
        g = [r for r, is_g in zip(rewards, greedy) if is_g]
        if not g:
            raise ValueError("baseline=greedy needs a greedy sample of the prompt")
        return [g[0]] * n
    if mode == "leave_one_out":
        total = sum(rewards)
        return [(total - r) / (n - 1) if n > 1 else 0.0 for r in rewards]
    raise ValueError(f"unknown baseline {mode!r}: use greedy, leave_one_out or none")


@dataclass
class SampleFeedback:
    """What the reward needs of one judged sample."""

    result: ResultLike
    program: str  # program_prefix + completion, as judged
    prefix_len: int  # characters of the program before the generated text
    token_offsets: Offsets  # each generated token's span in the generated text
    is_greedy: bool = False


@dataclass
class SampleReward:
    reward: float  # sequence reward R
    baseline: float
    scope: str
    token_rewards: list[float]


def group_rewards(samples: Sequence[SampleFeedback], cfg: RewardConfig = DEFAULT
                  ) -> list[SampleReward]:
    """Token rewards for all samples of one prompt (the group the baseline is taken over)."""
    seq = [sequence_reward(s.result, cfg) for s in samples]
    base = baselines(seq, [s.is_greedy for s in samples], cfg.baseline)
    out = []
    for s, r, b in zip(samples, seq, base):
        n = len(s.token_offsets)
        scope = error_scope(s.result, s.program) if cfg.fine_grained else "ignore"
        if scope == "whole":
            mask = [True] * n
        elif scope == "line":
            shifted = [(a + s.prefix_len, e + s.prefix_len) for a, e in s.token_offsets]
            mask = line_token_mask(s.program, shifted, s.result.error_line)
        else:
            mask = None
        out.append(SampleReward(r, b, scope, token_rewards(r, n, b, mask,
                                                           cfg.fine_grained_penalty)))
    return out
