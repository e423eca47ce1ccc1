"""Samples and their groups, as they travel from a sampler to an executor: plain records,
without torch, so that an executor actor can read them without loading the model's libraries.

A group is the samples of one task from one sampler call (the greedy one included): its
rewards are taken over the group (the baseline), so one executor judges it whole. A sampler
puts the groups of a call in the object store in a few parcels, one per executor it is meant
for, and hands the driver only a small `Parcel` for each (counts and a reference), which the
driver passes on to an executor. Which problems a call takes travels as a `ProblemDraw` (a few
numbers), so that what the driver sends and receives per call does not grow with its size.
"""

from __future__ import annotations

import random
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


@dataclass(frozen=True)
class ProblemDraw:
    """Which training problems a sampler call takes, in a few numbers whatever their count:
    `count` problems from position `start` of epoch `epoch`'s order (`problem_order`), going
    on into the next epochs' orders when it runs past the end."""

    epoch: int
    start: int
    count: int

    def indices(self, n: int, seed: int) -> list[int]:
        """The drawn problems' indices among the `n` training problems."""
        if n < 1:
            raise ValueError("no training problems to draw from")
        out, epoch, pos = [], self.epoch, self.start
        order = problem_order(n, seed, epoch)
        while len(out) < self.count:
            if pos >= n:
                epoch, pos = epoch + 1, 0
                order = problem_order(n, seed, epoch)
            out.append(order[pos])
            pos += 1
        return out


def problem_order(n: int, seed: int, epoch: int) -> list[int]:
    """The order training problems are drawn in during `epoch`: a permutation of range(n),
    the same for every process that knows the run's seed (the driver only counts positions;
    the samplers draw)."""
    order = list(range(n))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return order


@dataclass
class Parcel:
    """What the driver sees of one executor's share of a sampler call: how many samples and
    whole groups it holds, and the reference of its contents in the object store, put there
    by the sampler (which owns it). The contents are `[(problem reference, the group's
    samples), ...]`: a group is never split between parcels. Its size does not depend on how
    many samples it holds."""

    parcel_id: str  # "{sampler name}-{call}/{part}"
    samples: int
    groups: int
    policy_version: int
    ref: Any


def groups_of(samples: Sequence[Sample]) -> list[list[Sample]]:
    """The samples of one sampler call as groups, in the order their first sample comes."""
    groups: dict[str, list[Sample]] = {}
    for s in samples:
        groups.setdefault(s.group_id, []).append(s)
    return list(groups.values())


def make_parcels(samples: Sequence[Sample], problem_refs: dict[str, Any], parts: int,
                 put: Callable[[list], Any]) -> list[Parcel]:
    """The samples of one sampler call in at most `parts` parcels of whole groups, in order,
    each holding about the same number of samples; `put(contents)` stores a parcel's contents
    and gives its reference; `problem_refs`: each task's problem reference."""
    groups = groups_of(samples)
    if not groups:
        return []
    parts = max(1, min(parts, len(groups)))
    total = sum(len(g) for g in groups)
    out, chunk, held, call = [], [], 0, groups[0][0].group_id.rsplit("/", 1)[-1]
    for i, g in enumerate(groups):
        chunk.append(g)
        held += len(g)
        left_groups, left_parts = len(groups) - i - 1, parts - len(out) - 1
        # close the parcel at its share of the samples, or when each remaining parcel
        # needs one of the remaining groups
        if left_parts > 0 and (held >= total * (len(out) + 1) / parts
                               or left_groups == left_parts):
            out.append(chunk)
            chunk = []
    if chunk:
        out.append(chunk)
    return [Parcel(parcel_id=f"{call}/{k}", samples=sum(len(g) for g in chunk),
                   groups=len(chunk), policy_version=chunk[0][0].policy_version,
                   ref=put([(problem_refs[g[0].task_id], g) for g in chunk]))
            for k, chunk in enumerate(out)]
