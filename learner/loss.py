"""The RLTF objective as pure functions on tensors (no DeepSpeed, no Ray).

Shapes: B = batch, T = positions, V = vocabulary. Label tensors hold the token whose
log-probability counts at each position and -100 where nothing counts (prompt, padding).

* `token_logprobs`: log pi(token) per label position. Decoder-only models predict position t
  from logits at t-1 (shift by one); encoder-decoder models are given the labels and shift the
  decoder inputs themselves, so logits at t already score label t (no shift).
* `policy_gradient_loss`: - sum_t w_t * r_t * log pi(y_t) / (number of counted tokens), where
  r_t are the token rewards and w_t an optional importance weight
  min(pi(y_t) / mu(y_t), ratio_max) (detached) for samples made by older weights mu, plus an
  optional KL penalty kl_coef * (log pi - log pi_ref) on the same tokens.
  With `clip_eps` it is PPO's clipped surrogate instead: - min(rho_t r_t, clip(rho_t, 1 - eps,
  1 + eps) r_t) with rho_t = pi(y_t) / mu(y_t) (not detached). The gradient then stops once a
  token's probability has moved more than eps from the behaviour policy in the rewarded
  direction, which keeps negative rewards from driving log-probs to -inf: plain policy
  gradient with many negatively rewarded samples and a high learning rate collapses a
  small model within a hundred steps.
* `supervised_loss`: token-level cross-entropy on reference solutions.
* `combine`: rl + sl_weight * sl ("mix"), or, as the paper does, alternate the two terms.
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
                         clip_eps: float | None = None) -> tuple[torch.Tensor, PGStats]:
    """Mean over counted tokens of -w_t r_t log pi(y_t) (+ kl_coef * KL estimate), or with
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
        kl = ((logp - ref_logp.to(logp.dtype)) * mask).sum() / n
    loss = pg + kl_coef * kl
    return loss, PGStats(float(loss.detach()), float(pg.detach()), float(kl.detach()),
                         ratio_mean, clipped, float(n))


def supervised_loss(logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on the counted tokens: -mean log pi(y_t)."""
    mask = mask.to(logp.dtype)
    return -(logp * mask).sum() / mask.sum().clamp(min=1.0)


def combine(rl: torch.Tensor | None, sl: torch.Tensor | None, sl_weight: float,
            mode: str = "mix", step: int = 0) -> torch.Tensor:
    """mix: rl + sl_weight * sl. alternate: rl on even steps, sl_weight * sl on odd steps
    (falling back to whichever term is present)."""
    if mode not in ("mix", "alternate"):
        raise ValueError(f"unknown mode {mode!r}: use mix or alternate")
    if rl is None and sl is None:
        raise ValueError("no loss term to combine")
    if mode == "alternate":
        use_sl = (step % 2 == 1 and sl is not None) or rl is None
        return sl_weight * sl if use_sl else rl
    total = rl if rl is not None else torch.zeros((), device=sl.device)
    if sl is not None and sl_weight:
        total = total + sl_weight * sl
    return total
