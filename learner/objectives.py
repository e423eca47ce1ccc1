"""Loss callables the learner ranks run: `objective(engine, micro_batch) -> (loss, metrics)`.

They are small picklable objects (the driver sends them to the learner actors) built on the
pure functions of `learner/loss.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from learner.batch import PolicyBatch, TrainBatch
from learner.loss import (combine, label_mask, policy_gradient_loss, supervised_loss,
                          token_logprobs)

_REFERENCE_MODELS: dict[str, torch.nn.Module] = {}


def policy_logprobs(model, batch: PolicyBatch) -> torch.Tensor:
    """log pi of every label token, [B, T] (0 where the label is -100)."""
    if batch.encoder_decoder:
        out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                    labels=batch.labels)
        return token_logprobs(out.logits, batch.labels, shift=False)
    out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
    return token_logprobs(out.logits, batch.labels, shift=True)


def _reference(path: str, device) -> torch.nn.Module:
    model = _REFERENCE_MODELS.get(path)
    if model is None:
        from learner.engine import load_model

        model = load_model(path).to(device).eval()
        for p in model.parameters():
            p.requires_grad_(False)
        _REFERENCE_MODELS[path] = model
    return model


@dataclass
class RLTFObjective:
    """Policy gradient on token rewards (+ truncated importance weights, + KL to the frozen
    starting policy) mixed with, or alternated with, the supervised term."""

    sl_weight: float = 0.1
    sl_mode: str = "mix"
    ratio_max: float | None = 2.0
    kl_coef: float = 0.0
    reference_path: str | None = None

    def __call__(self, engine, mb: TrainBatch):
        device = engine.device
        metrics: dict[str, float] = {}
        rl_loss = sl_loss = None
        step = int(getattr(engine, "global_steps", 0))
        want_sl = mb.sl is not None and self.sl_weight > 0 and (
            self.sl_mode == "mix" or step % 2 == 1 or mb.rl is None)
        want_rl = mb.rl is not None and (self.sl_mode == "mix" or not want_sl)
        if want_rl:
            rl = mb.rl.to(device)
            logp = policy_logprobs(engine, rl)
            ref = None
            if self.kl_coef > 0 and self.reference_path:
                with torch.no_grad():
                    ref = policy_logprobs(_reference(self.reference_path, device), rl)
            mask = label_mask(rl.labels)
            rl_loss, st = policy_gradient_loss(logp, rl.token_rewards, mask,
                                               rl.behaviour_logprobs, self.ratio_max, ref,
                                               self.kl_coef)
            metrics.update({"loss/pg": st.pg, "loss/kl": st.kl, "is/ratio_mean": st.ratio_mean,
                            "is/clipped_frac": st.clipped_frac, "tokens": st.tokens,
                            "reward/token_mean": float((rl.token_rewards * mask).sum()
                                                       / mask.sum().clamp(min=1))})
        if want_sl:
            sl = mb.sl.to(device)
            sl_loss = supervised_loss(policy_logprobs(engine, sl), label_mask(sl.labels))
            metrics["loss/sl"] = float(sl_loss.detach())
        loss = combine(rl_loss, sl_loss, self.sl_weight, "mix")
        return loss, metrics


@dataclass
class LanguageModelObjective:
    """Plain next-token cross-entropy on a [batch, time] tensor of token ids (warm-up, tests)."""

    def __call__(self, engine, batch: torch.Tensor):
        batch = batch.to(engine.device)
        out = engine(input_ids=batch, labels=batch)
        return out.loss, {"ce": float(out.loss.detach())}
