"""From a judged group of samples to experiences: the token rewards of reward/ over the samples
of one problem from one sampler call (the baseline is taken over them), and an `Experience`
for each sampled program; and the small `ParcelSummary` of the judged groups of a parcel that
goes back to the driver for its accounting. Pure functions on plain records: the executor actor
that judged a parcel applies them (`cluster/executor_actor.py:ExecutorActor.judge_parcel`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from actors.replay_buffer import Experience
from core.config import RewardConfig
from core.records import Problem, slice_of
from reward import SampleFeedback, group_rewards


@dataclass
class Group:
    """The samples of one prompt from one sampler call: the baseline is taken over them."""

    problem: Problem
    samples: list = field(default_factory=list)
    results: dict = field(default_factory=dict)

    def complete(self) -> bool:
        return len(self.results) == len(self.samples)


def experiences_from_group(group: Group, rcfg: RewardConfig) -> tuple[list[Experience], list]:
    """Token rewards for every sample of the group (the greedy one included: it is the
    baseline), and an experience for each SAMPLED one: the greedy row was not drawn from the
    sampling policy, so it is never trained on. A generation that ended on EOS keeps the EOS
    token as its last RL token, with an empty character span (reward/tokens.py: no error line
    covers it; a whole-program error does)."""
    samples = group.samples
    results = [group.results[s.sample_id] for s in samples]
    feedback = [SampleFeedback(r, s.program, len(s.program_prefix), _offsets(s), s.is_greedy)
                for s, r in zip(samples, results)]
    rewards = group_rewards(feedback, rcfg)
    exps = []
    for s, r, rw in zip(samples, results, rewards):
        eos = [] if s.eos_token_id is None else [s.eos_token_id]
        if s.is_greedy or not (s.token_ids or eos):
            continue
        exps.append(Experience(
            task_id=s.task_id, sample_id=s.sample_id, prompt_ids=list(s.prompt_token_ids),
            completion_ids=list(s.token_ids) + eos, token_rewards=rw.token_rewards,
            behaviour_logprobs=list(s.logprobs) + ([s.eos_logprob] if eos else []),
            outcome=r.outcome, reward=rw.reward, policy_version=s.policy_version,
            passed=r.passed, total=r.total, is_greedy=False))
    return exps, results


@dataclass
class ParcelSummary:
    """What the driver keeps of a judged parcel (`actors/samples.py:Parcel`), in a size that
    does not grow with the parcel's: how many of its samples were judged and their outcomes,
    the per-slice passes, the sum and count of the rewards of the experiences made from it,
    and how many of those the buffer kept. `lost` says why a parcel could not be judged (its
    samples were lost with the sampler that held them): then nothing was judged and its
    samples count as abandoned."""

    parcel_id: str
    samples: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    slices: dict[tuple[str, bool], int] = field(default_factory=dict)  # (slice, passed)
    reward_sum: float = 0.0
    rewards: int = 0  # experiences made
    kept: int = 0
    lost: str | None = None

    def add(self, group: Group, exps: Sequence[Experience]) -> None:
        """Count a judged group and the experiences made from it."""
        sl = slice_of(group.problem)
        for s in group.samples:
            outcome = group.results[s.sample_id].outcome
            self.samples += 1
            self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
            key = (sl, outcome == "pass")
            self.slices[key] = self.slices.get(key, 0) + 1
        self.reward_sum += sum(e.reward for e in exps)
        self.rewards += len(exps)


def _offsets(sample) -> list[tuple[int, int]]:
    """The sample's token spans, plus an empty one at the end for its EOS token if any."""
    end = len(sample.completion)
    return list(sample.token_offsets) + ([(end, end)] if sample.eos_token_id is not None
                                         else [])
