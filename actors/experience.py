"""From a judged group of samples to experiences: the token rewards of reward/ over the samples
of one problem from one sampler call (the baseline is taken over them), and an `Experience`
for each sampled program; and the small `GroupSummary` of a judged group that goes back to the
driver for its accounting. Pure functions on plain records: the executor actor that judged a
group applies them (`cluster/executor_actor.py:ExecutorActor.judge_group`)."""

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
class GroupSummary:
    """What the driver keeps of a judged group: per sample (in the group's order) its
    outcome, the seconds its judging took and the tests it passed; the rewards of the
    experiences made from it, how many of them the buffer kept, and the problem's slice.
    `lost` says why a group could not be judged (its samples were lost with the sampler that
    held them): then the lists are empty and its samples count as abandoned."""

    group_id: str
    sample_ids: list[str]
    outcomes: list[str] = field(default_factory=list)
    durations: list[float] = field(default_factory=list)
    passed: list[int] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    kept: int = 0
    slice: str = "all"
    lost: str | None = None


def summarise(group: Group, exps: Sequence[Experience], kept: int, group_id: str
              ) -> GroupSummary:
    """The summary of a judged group whose experiences `exps` went to the buffer, which kept
    `kept` of them."""
    results = [group.results[s.sample_id] for s in group.samples]
    return GroupSummary(group_id=group_id, sample_ids=[s.sample_id for s in group.samples],
                        outcomes=[r.outcome for r in results],
                        durations=[r.duration_s for r in results],
                        passed=[r.passed for r in results], rewards=[e.reward for e in exps],
                        kept=kept, slice=slice_of(group.problem))


def _offsets(sample) -> list[tuple[int, int]]:
    """The sample's token spans, plus an empty one at the end for its EOS token if any."""
    end = len(sample.completion)
    return list(sample.token_offsets) + ([(end, end)] if sample.eos_token_id is not None
                                         else [])
