"""Samples and their groups, as they travel from a sampler to an executor: plain records,
without torch, so that an executor actor can read them without loading the model's libraries.

A group is the samples of one task from one sampler call (the greedy one included): its
rewards are taken over the group (the baseline), so one executor judges it whole. A sampler
keeps the group's samples in the object store and hands the driver only a `GroupIndex`: who
is in the group, and a reference to the samples, which the driver passes on to an executor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence


@dataclass
class Sample:
    """One completion. Plain Python values only: it crosses Ray actor boundaries."""

    task_id: str
    sample_id: str  # unique: "{group_id}-{k}", k counting the task's rows in the call
    group_id: str  # "{task_id}/v{version}/{sampler}-{call}": the samples of one task drawn in
    #                one call (the greedy one included) form a group, rewarded together
    is_greedy: bool
    prompt: str  # the text the model continued
    program_prefix: str  # the tail of `prompt` that is part of the program
    completion: str  # the generated text kept == concatenation of the kept tokens' texts
    program: str  # program_prefix + completion: what the executor judges
    prompt_token_ids: list[int]  # the ids fed to the model (encoder input for encoder-decoders)
    token_ids: list[int]  # generated ids kept (no EOS)
    token_offsets: list[tuple[int, int]]  # each kept token's [start, end) in `completion`
    logprobs: list[float]  # log pi(token) under the raw policy logits, one per kept token
    policy_version: int
    finish_reason: str  # "eos" | "stop" | "length"
    prompt_truncated: bool = False  # the prompt was longer than max_prompt_tokens
    eos_token_id: int | None = None  # the EOS that ended the generation (finish_reason "eos")
    eos_logprob: float | None = None  # its log pi, as `logprobs`


@dataclass
class GroupIndex:
    """What the driver sees of a generated group: its identity, the ids of its samples (each
    gets exactly one verdict, counted by the driver) and the reference of its samples in the
    object store (owned by the sampler that put them there)."""

    group_id: str
    task_id: str
    sample_ids: list[str]
    policy_version: int
    ref: Any  # the group's samples, `list[Sample]`, in the object store


def group_indexes(samples: Sequence[Sample], put: Callable[[list[Sample]], Any]
                  ) -> list[GroupIndex]:
    """The samples of one sampler call as groups, in the order their first sample comes:
    `put(samples of one group)` stores each group and gives its reference."""
    groups: dict[str, list[Sample]] = {}
    for s in samples:
        groups.setdefault(s.group_id, []).append(s)
    return [GroupIndex(group_id=gid, task_id=members[0].task_id,
                       sample_ids=[s.sample_id for s in members],
                       policy_version=members[0].policy_version, ref=put(members))
            for gid, members in groups.items()]
