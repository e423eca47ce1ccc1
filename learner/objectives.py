"""Loss callables the learner ranks run: `objective(engine, micro_batch) -> (loss, metrics)`.

They are small picklable objects (the driver sends them to the learner actors) built on the
pure functions of `learner/loss.py` and `learner/critic.py`. `engine` is what
`PolicyEngine.train_step` passes: call it like the model; `.device`, `.global_steps` and
`.critic` (the rank's `Critic`, or None) are read from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from core.config import LearnerConfig
from learner.batch import PolicyBatch, TrainBatch
from learner.critic import (advantages, label_states, outcome_loss, outcome_weights,
                            value_loss)
from learner.loss import (combine, label_mask, policy_gradient_loss, supervised_loss,
                          token_logprobs)

_REFERENCE_MODELS: dict[str, torch.nn.Module] = {}


def policy_logprobs(model, batch: PolicyBatch) -> torch.Tensor:
    """log pi of every label token, [B, T] (0 where the label is -100)."""
    return policy_forward(model, batch)[0]


def policy_forward(model, batch: PolicyBatch, hidden: bool = False
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One forward pass: log pi of every label token [B, T] and, with `hidden`, the last
    hidden state aligned with the labels [B, T, H] (`label_states`; the decoder's for an
    encoder-decoder)."""
    kw = {"output_hidden_states": True} if hidden else {}
    if batch.encoder_decoder:
        out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                    labels=batch.labels, **kw)
        states = label_states(out.decoder_hidden_states[-1], shift=False) if hidden else None
        return token_logprobs(out.logits, batch.labels, shift=False), states
    out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, **kw)
    states = label_states(out.hidden_states[-1], shift=True) if hidden else None
    return token_logprobs(out.logits, batch.labels, shift=True), states


def _reference(path: str, engine) -> torch.nn.Module:
    """The frozen reference policy of this process, built once (learner/reference.py)."""
    model = _REFERENCE_MODELS.get(path)
    if model is None:
        from learner.reference import reference_model

        model = _REFERENCE_MODELS[path] = reference_model(path, engine)
    return model


@dataclass
class RLTFObjective:
    """Policy gradient on token rewards (clipped surrogate, or truncated importance weights;
    + a KL penalty to the frozen starting policy) with the supervised term, mixed into every
    micro-batch (sl_mode="mix") or on micro-batches of their own (sl_mode="alternate": the
    driver interleaves supervised and RL micro-batches within each optimizer step)."""

    # the run's learner section as is: sl_weight, sl_mode, clip_eps, importance_ratio_max,
    # kl_coef, kl_estimator (and, for ActorCriticObjective, critic)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    reference_path: str | None = None  # the starting policy, the KL penalty's reference

    def __call__(self, engine, mb: TrainBatch):
        lc = self.learner
        device = engine.device
        metrics: dict[str, float] = {}
        rl_loss = sl_loss = None
        if mb.rl is not None:
            rl = mb.rl.to(device)
            mask = label_mask(rl.labels)
            weights, logp = self._weights(engine, rl, mask, metrics)
            ref = None
            if lc.kl_coef > 0 and self.reference_path:
                with torch.no_grad():
                    ref = policy_logprobs(_reference(self.reference_path, engine), rl)
            rl_loss, st = policy_gradient_loss(logp, weights, mask, rl.behaviour_logprobs,
                                               lc.importance_ratio_max, ref, lc.kl_coef,
                                               clip_eps=lc.clip_eps,
                                               kl_estimator=lc.kl_estimator)
            metrics.update({"loss/pg": st.pg, "loss/kl": st.kl, "is/ratio_mean": st.ratio_mean,
                            "is/clipped_frac": st.clipped_frac, "tokens": st.tokens,
                            "reward/token_mean": float((rl.token_rewards * mask).sum()
                                                       / mask.sum().clamp(min=1))})
        if mb.sl is not None and lc.sl_weight > 0:
            sl = mb.sl.to(device)
            sl_loss = supervised_loss(policy_logprobs(engine, sl), label_mask(sl.labels))
            metrics["loss/sl"] = float(sl_loss.detach())
        loss = combine(rl_loss, sl_loss, lc.sl_weight, lc.sl_mode)
        return loss, metrics

    def _weights(self, engine, rl: PolicyBatch, mask: torch.Tensor, metrics: dict
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """(per-token policy-gradient weights, log pi): here the token rewards."""
        return rl.token_rewards, policy_logprobs(engine, rl)


@dataclass
class ActorCriticObjective(RLTFObjective):
    """RLTFObjective with a critic trained alongside the policy (one policy forward pass).

    critic="value" (Gorinski et al. 2023): the policy-gradient weights are the advantages
    A_t = G_t - V_t, G_t the batch's `token_rewards` (to be sent WITHOUT a baseline:
    r_t = R - penalty * [token on the error line]; the critic is the baseline). The value head
    is fitted to G_t by mean squared error.
    critic="outcome" (CodeRL): the weights are r_t * q_t, q_t the critic's probability of the
    sample's observed outcome at token t (the batch must carry `outcomes`); the head is
    fitted by cross-entropy to the observed outcome at every token.

    The critic's loss goes to `engine.critic.backward` (its own optimiser); the returned loss
    is the policy's only. The engine needs a critic head of the same kind
    (`EngineSettings(critic=True)` with `learner.critic` the same)."""

    normalize_advantages: bool = False

    @property
    def critic(self) -> str:
        return self.learner.critic

    def _weights(self, engine, rl: PolicyBatch, mask: torch.Tensor, metrics: dict
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        critic = getattr(engine, "critic", None)
        if critic is None or critic.kind != self.critic:
            have = None if critic is None else critic.kind
            raise ValueError(f"ActorCriticObjective(critic={self.critic!r}) needs an engine "
                             f"built with EngineSettings(critic=True) and learner.critic="
                             f"{self.critic!r}; it has {have!r}")
        logp, states = policy_forward(engine, rl, hidden=True)
        n = mask.sum().clamp(min=1)
        if self.critic == "value":
            returns = rl.token_rewards
            values = critic(states)  # [B, T]
            loss = value_loss(values, returns, mask)
            critic.backward(loss)
            adv = advantages(returns, values, mask, self.normalize_advantages)
            metrics.update({"critic/value_loss": float(loss.detach()),
                            "critic/value_mean": float((values.detach() * mask).sum() / n),
                            "critic/advantage_mean": float(adv.sum() / n)})
            return adv, logp
        if rl.outcomes is None:
            raise ValueError("critic='outcome' needs each sample's outcome: "
                             "collate(..., outcomes=[result.outcome, ...])")
        logits = critic(states)  # [B, T, K]
        loss = outcome_loss(logits, rl.outcomes, mask)
        critic.backward(loss)
        q = outcome_weights(logits, rl.outcomes, mask)
        hit = (logits.detach().argmax(-1) == rl.outcomes.unsqueeze(1)).float() * mask
        metrics.update({"critic/outcome_loss": float(loss.detach()),
                        "critic/outcome_prob": float(q.sum() / n),
                        "critic/outcome_acc": float(hit.sum() / n)})
        return rl.token_rewards * q, logp


@dataclass
class LanguageModelObjective:
    """Plain next-token cross-entropy on a [batch, time] tensor of token ids (warm-up, tests)."""

    def __call__(self, engine, batch: torch.Tensor):
        batch = batch.to(engine.device)
        out = engine(input_ids=batch, labels=batch)
        return out.loss, {"ce": float(out.loss.detach())}
