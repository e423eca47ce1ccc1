"""What one learner step did, as a record, and the flat clock that times the driver's phases.

    clock = PhaseClock()
    with clock("judge"):          # phases never nest: a phase opened inside another raises
        ...
    clock.totals                  # seconds per phase over the run (summary.json)
    clock.take()                  # seconds per phase since the last take (one step's)

`StepReport` gathers one step's figures (learner metrics, buffer, outcomes, rewards,
throughput, phase seconds) and turns them into the metrics row and the console line. Pure:
no Ray, tested in-process.
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field

from core.records import OUTCOMES


class PhaseClock:
    """Seconds per named phase. Phases are flat: each second counts in one phase only."""

    def __init__(self, now=time.perf_counter) -> None:
        self.totals: dict[str, float] = collections.defaultdict(float)
        self._since: dict[str, float] = collections.defaultdict(float)
        self._open: str | None = None
        self._now = now

    def __call__(self, name: str):
        clock = self

        class _Phase:
            def __enter__(self):
                if clock._open is not None:
                    raise RuntimeError(f"phase {name!r} started inside phase {clock._open!r}: "
                                       "phases are flat, so that no second counts twice")
                clock._open = name
                self.t0 = clock._now()

            def __exit__(self, *exc):
                dt = clock._now() - self.t0
                clock.totals[name] += dt
                clock._since[name] += dt
                clock._open = None

        return _Phase()

    def take(self) -> dict[str, float]:
        """Seconds per phase since the last call."""
        out, self._since = dict(self._since), collections.defaultdict(float)
        return out


@dataclass
class StepReport:
    """One learner step: what the ranks reported, what the run has done so far, the buffer,
    and the outcomes, rewards and per-slice passes judged since the previous step."""

    step: int
    losses: list[float]  # one per rank
    grad_norm: float
    lr: float
    extra: dict  # the objective's own figures (rank 0's)
    step_s: float  # wall seconds of this learner step
    learner_busy_s: float  # over the run
    wall_s: float  # since training began
    samples_generated: int
    programs_judged: int
    buffer: object  # actors.replay_buffer.BufferStats
    policy_version: int
    outcomes: dict[str, int] = field(default_factory=dict)  # judged since the last step
    rewards: tuple[float, int] = (0.0, 0)  # sum and count of the experiences' rewards
    slices: dict[tuple[str, bool], int] = field(default_factory=dict)  # (slice, passed)
    sync_s: float | None = None
    phases: dict[str, float] = field(default_factory=dict)  # seconds since the last step

    @property
    def loss(self) -> float:
        return sum(self.losses) / len(self.losses)

    @property
    def reward_mean(self) -> float:
        total, n = self.rewards
        return total / n if n else 0.0

    def outcome_fraction(self, outcome: str) -> float:
        return self.outcomes.get(outcome, 0) / (sum(self.outcomes.values()) or 1)

    def row(self) -> dict[str, float]:
        """The step's metrics row (metrics.jsonl, TensorBoard)."""
        wall = max(self.wall_s, 1e-9)
        b = self.buffer
        row = {
            "loss/total": self.loss, "learner/grad_norm": self.grad_norm, "learner/lr": self.lr,
            "learner/step_s": self.step_s, "learner/busy_fraction": self.learner_busy_s / wall,
            "buffer/size": b.size, "buffer/mean_age": b.mean_age,
            "buffer/dropped_stale": b.dropped_stale, "buffer/dropped_full": b.dropped_full,
            "buffer/dropped_duplicate": b.dropped_duplicate,
            "throughput/samples_per_s": self.samples_generated / wall,
            "throughput/programs_per_s": self.programs_judged / wall,
            "policy/version": self.policy_version,
        }
        for k, v in self.extra.items():
            row[k if "/" in k else f"learner/{k}"] = v
        # judged since the last step: none in a step that waited for nothing new (the
        # columns are left out then, rather than written as zeros)
        if self.rewards[1]:
            row["reward/mean"] = self.reward_mean
        if self.outcomes:
            for o in OUTCOMES:
                row[f"outcome/{o}"] = self.outcome_fraction(o)
        for sl in sorted({k for k, _ in self.slices}):  # training pass rate per slice
            n = self.slices.get((sl, True), 0) + self.slices.get((sl, False), 0)
            row[f"train_pass/{sl}"] = self.slices.get((sl, True), 0) / n
        if self.sync_s is not None:
            row["sync/seconds"] = self.sync_s
        for name, s in sorted(self.phases.items()):
            row[f"phase_s/{name}"] = s
        return row

    def line(self, max_steps: int) -> str:
        """The console line."""
        reward = f"{self.reward_mean:+.3f}" if self.rewards[1] else "-"
        passed = f"{self.outcome_fraction('pass') * 100:.0f}%" if self.outcomes else "-"
        return (f"[step {self.step}/{max_steps}] loss {self.loss:.4f} "
                f"reward {reward} pass {passed} "
                f"buffer {self.buffer.size} age {self.buffer.mean_age:.2f} "
                f"({self.step_s:.1f}s/step)")
