"""Collating experiences into padded tensors for the learner.

Decoder-only: input = prompt tokens + completion tokens, right-padded; labels are -100 on the
prompt and the padding, the completion token ids elsewhere; token rewards and behaviour
log-probs sit at the same positions as their labels.

Encoder-decoder: the encoder reads the prompt; the labels are the completion (the model shifts
them into decoder inputs itself); rewards and log-probs align with the labels.

Supervised examples (prompt + reference solution) use the same layout with zero rewards.

For an outcome critic (`learner/critic.py`), `outcomes` holds each sample's outcome class
index [B] (`OUTCOME_CLASSES`: pass, fail, runtime_error, syntax_error).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from learner.loss import IGNORE
from learner.models import cut_middle


@dataclass
class PolicyBatch:
    input_ids: torch.Tensor  # [B, T] decoder-only: prompt+completion; enc-dec: prompt
    attention_mask: torch.Tensor  # [B, T]
    labels: torch.Tensor  # [B, T] (enc-dec: [B, L]) -100 where nothing counts
    token_rewards: torch.Tensor  # like labels, 0 where nothing counts
    behaviour_logprobs: torch.Tensor  # like labels
    encoder_decoder: bool = False
    outcomes: torch.Tensor | None = None  # [B] long: outcome class of each sample

    @property
    def num_samples(self) -> int:
        return int(self.input_ids.shape[0])

    def to(self, device) -> "PolicyBatch":
        f = (lambda t: t.to(device) if t is not None else None)
        return PolicyBatch(f(self.input_ids), f(self.attention_mask), f(self.labels),
                           f(self.token_rewards), f(self.behaviour_logprobs),
                           self.encoder_decoder, f(self.outcomes))


@dataclass
class TrainBatch:
    """One micro-batch: RL experiences and, optionally, supervised examples."""

    rl: PolicyBatch | None
    sl: PolicyBatch | None = None

    @property
    def num_samples(self) -> int:
        return (self.rl.num_samples if self.rl else 0)


def collate(prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]],
            rewards: Sequence[Sequence[float]] | None = None,
            logprobs: Sequence[Sequence[float]] | None = None, pad_id: int = 0,
            encoder_decoder: bool = False, max_len: int | None = None,
            outcomes: Sequence[str | int] | None = None) -> PolicyBatch:
    """Pad a list of (prompt, completion) token sequences with aligned per-token values.

    With `max_len`, a decoder-only sequence longer than that loses the middle of its prompt
    (`learner.models.cut_middle`, the sampler's rule: BOS and the statement's start stay); the
    completion, which carries the rewards, is kept whole. `outcomes`: one per sample, an
    executor outcome string ("timeout" counts as "runtime_error") or a class index."""
    n = len(prompts)
    if len(completions) != n:
        raise ValueError("prompts and completions differ in number")
    out_ids = _outcome_ids(outcomes, n) if outcomes is not None else None
    rewards = rewards or [[0.0] * len(c) for c in completions]
    logprobs = logprobs or [[0.0] * len(c) for c in completions]
    for i, c in enumerate(completions):
        if len(rewards[i]) != len(c) or len(logprobs[i]) != len(c):
            raise ValueError(f"sample {i}: per-token values do not align with its completion")

    if encoder_decoder:
        t_enc = max(1, max(len(p) for p in prompts))
        t_dec = max(1, max(len(c) for c in completions))
        ids = torch.full((n, t_enc), pad_id, dtype=torch.long)
        att = torch.zeros((n, t_enc), dtype=torch.long)
        labels = torch.full((n, t_dec), IGNORE, dtype=torch.long)
        rew = torch.zeros((n, t_dec))
        beh = torch.zeros((n, t_dec))
        for i, (p, c) in enumerate(zip(prompts, completions)):
            ids[i, :len(p)] = torch.tensor(p, dtype=torch.long)
            att[i, :len(p)] = 1
            if c:
                labels[i, :len(c)] = torch.tensor(c, dtype=torch.long)
                rew[i, :len(c)] = torch.tensor(rewards[i])
                beh[i, :len(c)] = torch.tensor(logprobs[i])
        return PolicyBatch(ids, att, labels, rew, beh, True, out_ids)
    rows = []
    for p, c in zip(prompts, completions):
        p = list(p)
        if max_len is not None and len(p) + len(c) > max_len:
            p = cut_middle(p, max(0, max_len - len(c)))
        rows.append((p, list(c)))
    t = max(1, max(len(p) + len(c) for p, c in rows))
    ids = torch.full((n, t), pad_id, dtype=torch.long)
    att = torch.zeros((n, t), dtype=torch.long)
    labels = torch.full((n, t), IGNORE, dtype=torch.long)
    rew = torch.zeros((n, t))
    beh = torch.zeros((n, t))
    for i, (p, c) in enumerate(rows):
        seq = p + c
        ids[i, :len(seq)] = torch.tensor(seq, dtype=torch.long)
        att[i, :len(seq)] = 1
        if c:
            lo, hi = len(p), len(seq)
            labels[i, lo:hi] = torch.tensor(c, dtype=torch.long)
            rew[i, lo:hi] = torch.tensor(rewards[i])
            beh[i, lo:hi] = torch.tensor(logprobs[i])
    return PolicyBatch(ids, att, labels, rew, beh, False, out_ids)


def _outcome_ids(outcomes: Sequence[str | int], n: int) -> torch.Tensor:
    from learner.critic import OUTCOME_CLASSES, outcome_id

    if len(outcomes) != n:
        raise ValueError(f"{len(outcomes)} outcomes for {n} samples")
    ids = [outcome_id(o) if isinstance(o, str) else int(o) for o in outcomes]
    if any(not 0 <= i < len(OUTCOME_CLASSES) for i in ids):
        raise ValueError(f"outcome class ids must lie in [0, {len(OUTCOME_CLASSES)}): {ids}")
    return torch.tensor(ids, dtype=torch.long)
