"""Loss callables the learner ranks run: `objective(engine, micro_batch) -> (loss, metrics)`.

They are small picklable objects (the driver sends them to the learner actors), built on the
pure functions of `learner/loss.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class LanguageModelObjective:
    """Plain next-token cross-entropy on a [batch, time] tensor of token ids (warm-up, tests)."""

    def __call__(self, engine, batch: torch.Tensor):
        batch = batch.to(engine.device)
        out = engine(input_ids=batch, labels=batch)
        return out.loss, {"ce": float(out.loss.detach())}
