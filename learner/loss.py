"""The RLTF objective as pure functions on tensors (no DeepSpeed, no Ray).

Shapes: B = batch, T = positions, V = vocabulary. Label tensors hold the token whose
log-probability counts at each position and -100 where nothing counts (prompt, padding).

* `token_logprobs`: log pi(token) per label position. Decoder-only models predict position t
  from logits at t-1 (shift by one); encoder-decoder models are given the labels and shift the
  decoder inputs themselves, so logits at t already score label t (no shift).
* `policy_gradient_loss`: - sum_t w_t * r_t * log pi(y_t) / (number of counted tokens), where
  r_t are the token rewards and w_t an optional importance weight
  min(pi(y_t) / mu(y_t), ratio_max) (detached) for samples made by older weights mu, plus an
  optional KL penalty kl_coef * KL_t (`kl_penalty`) to a frozen reference policy on the same
  tokens.
  With `clip_eps` it is PPO's clipped surrogate instead: - min(rho_t r_t, clip(rho_t, 1 - eps,
  1 + eps) r_t) with rho_t = pi(y_t) / mu(y_t) (not detached). The gradient then stops once a
  token's probability has moved more than eps from the behaviour policy in the rewarded
  direction, which keeps negative rewards from driving log-probs to -inf: plain policy
  gradient with many negatively rewarded samples and a high learning rate collapses a
  small model within a hundred steps.
* `kl_penalty`: a per-token estimate of KL(pi || pi_ref) on sampled tokens whose gradient
  depends on the reference. With d_t = log pi_ref(y_t) - log pi(y_t):
    k3 = exp(d) - d - 1 (>= 0; unbiased for KL(pi || pi_ref) on tokens drawn from pi; as a
         loss its gradient is (1 - pi_ref / pi) grad log pi: a token the reference finds
         likelier than the policy does is pushed up, one it finds less likely is pushed down.
         This is the KL term of GRPO-style objectives.)
    k2 = d^2 / 2 (gradient -d grad log pi = (log pi - log pi_ref) grad log pi: the gradient of
         the per-token KL(pi || pi_ref) itself).
  The plain estimate log pi - log pi_ref is NOT offered: its gradient, grad log pi, is the
  same whatever the reference says (a constant push-down of sampled tokens).
* `supervised_loss`: token-level cross-entropy on reference solutions.
* `combine`: the loss of one micro-batch. "mix": rl + sl_weight * sl on every micro-batch.
  "alternate" (the paper's official code): a micro-batch carries either supervised examples
  or RL samples, the driver interleaves the two within each optimizer step, and the loss is
  sl_weight * sl or rl, whichever the micro-batch holds.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

IGNORE = -100


def token_logprobs(logits: torch.Tensor, labels: torch.Tensor, shift: bool = True
                   ) -> torch.Tensor:
    """[B, T, V] logits and [B, T] labels -> [B, T] log-probs (0 where label == -100)."""
    if shift:
        logits = logits[:, :-1, :]
        labels = labels[:, 1:]
    mask = labels != IGNORE
    safe = labels.masked_fill(~mask, 0)
    logp = torch.log_softmax(logits.float(), dim=-1)  # [B, T', V]
    out = logp.gather(-1, safe.unsqueeze(-1)).squeeze(-1) * mask  # [B, T']
    if shift:
        out = F.pad(out, (1, 0))  # position 0 never counts; keep [B, T]
    return out


def label_mask(labels: torch.Tensor) -> torch.Tensor:
    return (labels != IGNORE).to(torch.float32)


@dataclass
class PGStats:
    loss: float
    pg: float
    kl: float
    ratio_mean: float
    clipped_frac: float
    tokens: float


def policy_gradient_loss(logp: torch.Tensor, token_rewards: torch.Tensor, mask: torch.Tensor,
                         behaviour_logp: torch.Tensor | None = None,
                         ratio_max: float | None = None,
                         ref_logp: torch.Tensor | None = None, kl_coef: float = 0.0,
                         clip_eps: float | None = None, kl_estimator: str = "k3"
                         ) -> tuple[torch.Tensor, PGStats]:
    """Mean over counted tokens of -w_t r_t log pi(y_t) (+ kl_coef * `kl_penalty`), or with
    `clip_eps` (needs behaviour_logp) the clipped surrogate. [B, T] in."""
    mask = mask.to(logp.dtype)
    n = mask.sum().clamp(min=1.0)
    weights = token_rewards.to(logp.dtype)
    ratio_mean, clipped = 1.0, 0.0
    if clip_eps is not None:
        if behaviour_logp is None:
            raise ValueError("clip_eps needs the behaviour log-probs of the samples")
        ratio = torch.exp((logp - behaviour_logp.to(logp.dtype)) * mask)
        bounded = ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps)
        surrogate = torch.minimum(ratio * weights, bounded * weights)
        active = (bounded * weights < ratio * weights).detach()  # the clipped branch is taken
        clipped = float((active.float() * mask).sum() / n)
        ratio_mean = float((ratio.detach() * mask).sum() / n)
        pg = -(surrogate * mask).sum() / n
    elif behaviour_logp is not None and ratio_max is not None:
        ratio = torch.exp((logp.detach() - behaviour_logp.to(logp.dtype)) * mask)
        clipped = float(((ratio > ratio_max).float() * mask).sum() / n)
        ratio = ratio.clamp(max=ratio_max)
        ratio_mean = float((ratio * mask).sum() / n)
        weights = weights * ratio
    if clip_eps is None:
        pg = -(weights * logp * mask).sum() / n
    kl = torch.zeros((), dtype=logp.dtype, device=logp.device)
    if ref_logp is not None and kl_coef > 0:
        kl = (kl_penalty(logp, ref_logp.to(logp.dtype), kl_estimator) * mask).sum() / n
    loss = pg + kl_coef * kl
    return loss, PGStats(float(loss.detach()), float(pg.detach()), float(kl.detach()),
                         ratio_mean, clipped, float(n))


KL_ESTIMATORS = ("k3", "k2")
_MAX_LOG_RATIO = 20.0  # exp(20) ~ 5e8: finite in fp32, and far past any useful weight


def kl_penalty(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: str = "k3"
               ) -> torch.Tensor:
    """Per-token KL estimate [B, T] from log pi and log pi_ref of the sampled tokens (see the
    module docstring). k3's log-ratio is clamped to +-20 so that exp() stays finite."""
    if estimator not in KL_ESTIMATORS:
        raise ValueError(f"unknown KL estimator {estimator!r}: use one of {KL_ESTIMATORS}")
    d = ref_logp - logp
    if estimator == "k2":
        return 0.5 * d * d
    d = d.clamp(-_MAX_LOG_RATIO, _MAX_LOG_RATIO)
    return torch.exp(d) - d - 1.0


def supervised_loss(logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on the counted tokens: -mean log pi(y_t)."""
    mask = mask.to(logp.dtype)
    return -(logp * mask).sum() / mask.sum().clamp(min=1.0)


def combine(rl: torch.Tensor | None, sl: torch.Tensor | None, sl_weight: float,
            mode: str = "mix") -> torch.Tensor:
    """The loss of one micro-batch. mix: rl + sl_weight * sl (either may be absent).
    alternate: the micro-batch holds one term, returned as rl or sl_weight * sl."""
    if mode not in ("mix", "alternate"):
        raise ValueError(f"unknown mode {mode!r}: use mix or alternate")
    if rl is None and sl is None:
        raise ValueError("no loss term to combine")
    if mode == "alternate":
        if rl is not None and sl is not None:
            raise ValueError("alternate: a micro-batch carries either RL samples or supervised "
                             "examples, not both (the driver interleaves them)")
        return rl if rl is not None else sl_weight * sl
    total = rl if rl is not None else torch.zeros((), device=sl.device)
    if sl is not None and sl_weight:
        total = total + sl_weight * sl
    return total
