"""Policy versions: what number the samplers' weights carry, and which weights the store must
hold again after Ray restarted it empty. A plain class, tested without Ray."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class PolicyVersions:
    """Policy versions count publishes: version v is the v-th set of weights the samplers
    received (0: the starting weights), every `sync_every` learner steps. Samples carry the
    version that made them and the buffer's staleness bound is in versions, so with
    sync_every=10 and max_staleness=4 a sample lives for up to 40 learner steps after its
    weights were published."""

    sync_every: int = 1
    version: int = 0
    published_step: int = 0  # the learner step whose weights `version` is
    held: Any = None  # what the weight store was given for `version` (its [ObjectRef])

    def due(self, step: int) -> bool:
        """Whether learner step `step` publishes (every sync_every steps, never twice)."""
        return step % self.sync_every == 0 and step != self.published_step

    def publish(self, step: int) -> int:
        """The version number of a publish of the weights of learner step `step`: the next
        one, or the current one again when those weights were its weights already (a
        restore re-sends the same weights to a fresh topology)."""
        if step != self.published_step:
            self.version += 1
            self.published_step = step
            self.held = None
        return self.version

    def hold(self, weights: Any) -> None:
        """Remember what the weight store was given for the current version."""
        self.held = weights

    def resend(self) -> tuple[int, Any] | None:
        """After the weight store lost its copy (Ray restarted it empty): the version the
        samplers hold and exactly the weights published as it, or None when they are not
        held (then nothing is sent; the next scheduled publish fills the store). Never the
        learner's newer weights: as the next version they would add a publish and shift
        every later one; under the current number samples would carry a version whose
        weights did not make them."""
        return None if self.held is None else (self.version, self.held)

    def saved_with_checkpoint(self, step: int) -> bool:
        """Whether a checkpoint of learner step `step` must also hold the weights the
        samplers have: between publishes (after the first) they are an earlier step's, which
        the learner's state no longer has, and only they restore the schedule exactly."""
        return self.published_step != step and self.version > 0

    def after_restore(self, step: int, saved: Any = None) -> str:
        """What a restore of a checkpoint of learner step `step` (this clock loaded from its
        state) sends to the fresh samplers so that later publishes keep their steps and
        numbers, as in a run never interrupted:
        "republish": the learner's weights are this version's (a checkpoint at a publish);
        "none": the samplers' starting weights are this version (nothing published yet);
        "saved": the weights saved with the checkpoint are this version's (`saved`, now
        held); "next": they were not saved (a checkpoint written before they were), so the
        learner's weights go out as the next version and later versions move up by one."""
        if self.published_step == step:
            return "republish"
        if self.version == 0:
            return "none"
        if saved is not None:
            self.hold(saved)
            return "saved"
        return "next"
