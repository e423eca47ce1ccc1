"""One optimizer step's micro-batches from a list of experiences: the RL rows collated, and the
supervised term's reference solutions (tokenized once per problem, the prompt as the samplers
tokenize it) drawn from the training problems that have them. A plain class: each learner
rank builds one at start-up and collates its own share of every batch.

    builder = StepBatches(settings, tokenizer, enc_dec, problems, seed=0)
    micro = builder.micro_batches(experiences)   # this rank's micro-batches, in order
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from core.config import LearnerConfig
from core.records import Problem


@dataclass(frozen=True)
class BatchSettings:
    """What shapes a step's micro-batches: the run's `learner` section as is, and two values
    the run derives from other settings."""

    learner: LearnerConfig  # batch_size, ranks, micro_batch_size, sl_weight, sl_mode
    outcome_critic: bool = False  # collate outcomes for the outcome critic
    prompt_limit: int | None = None  # prompt tokens, the same for samplers and SL

    @property
    def per_rank(self) -> int:
        return self.learner.batch_size // self.learner.ranks

    def micro_batches(self) -> int:
        """Micro-batches one rank runs per optimizer step (DeepSpeed's gradient
        accumulation): its RL share in micro_batch_size pieces, and with sl_mode=alternate as
        many supervised micro-batches between them."""
        rl = self.per_rank // self.learner.micro_batch_size
        return 2 * rl if self.learner.sl_mode == "alternate" else rl


class StepBatches:
    """Collates experiences into one rank's micro-batches for one optimizer step. mix: each
    holds RL samples and as many reference solutions; alternate: supervised and RL
    micro-batches take turns (supervised first, as in the paper's code), each of one kind."""

    def __init__(self, settings: BatchSettings, tokenizer, enc_dec: bool,
                 problems: list[Problem], seed: int = 0):
        self.settings, self.tokenizer, self.enc_dec = settings, tokenizer, enc_dec
        # the supervised term draws from the problems with a reference; tests-only ones
        # reach the learner through RL alone
        self.sl_problems = [p for p in problems if p.solutions]
        self.rng = random.Random(seed)
        self._pairs: dict[str, list] = {}  # task id -> tokenized reference solutions

    def micro_batches(self, exps: list) -> list:
        """The micro-batches of one rank's share `exps` (settings.per_rank experiences)."""
        from learner.batch import TrainBatch, collate

        s = self.settings.learner
        pad = self.tokenizer.pad_token_id
        micro = []
        for i in range(0, len(exps), s.micro_batch_size):
            part = exps[i:i + s.micro_batch_size]
            outcomes = [e.outcome for e in part] if self.settings.outcome_critic else None
            rl = collate([e.prompt_ids for e in part], [e.completion_ids for e in part],
                         [e.token_rewards for e in part], [e.behaviour_logprobs for e in part],
                         pad_id=pad, encoder_decoder=self.enc_dec, outcomes=outcomes)
            sl = self.supervised(len(part)) if s.sl_weight > 0 else None
            if s.sl_mode == "alternate":
                micro += [TrainBatch(rl=None, sl=sl), TrainBatch(rl=rl)]
            else:
                micro.append(TrainBatch(rl=rl, sl=sl))
        return micro

    def supervised(self, n: int):
        """Up to n (prompt, reference solution) pairs of random training problems."""
        from learner.batch import collate

        if not self.sl_problems:
            return None
        probs = self.rng.sample(self.sl_problems, min(len(self.sl_problems), n))
        pairs = [pair for p in probs for pair in self.reference_pairs(p)][:n]
        return collate([a for a, _ in pairs], [b for _, b in pairs],
                       pad_id=self.tokenizer.pad_token_id, encoder_decoder=self.enc_dec)

    def reference_pairs(self, problem: Problem) -> list:
        """The problem's reference solutions as (prompt ids, target ids), tokenized once."""
        from learner.sft import sft_pairs

        pairs = self._pairs.get(problem.task_id)
        if pairs is None:
            pairs = self._pairs[problem.task_id] = sft_pairs(
                [problem], self.tokenizer, self.enc_dec, self.settings.prompt_limit)
        return pairs

    def rng_state(self) -> Any:
        return self.rng.getstate()

    def set_rng_state(self, state) -> None:
        self.rng.setstate((state[0], tuple(state[1]), state[2]))
