"""Critics for actor–critic training: small heads on the policy's last hidden states.

Two kinds, both trained jointly with the policy, each with its own AdamW optimiser:

* "value" (Gorinski et al. 2023, arXiv 2310.13669): `ValueHead` predicts the return of every
  generated token, V_t; the policy is trained on per-token advantages A_t = G_t - V_t, so the
  critic replaces RLTF's greedy / leave-one-out baseline. G_t is the token's reward without a
  baseline: r_t = R - penalty * [token blamed for the error].
* "outcome" (CodeRL, Le et al. 2022): `OutcomeHead` classifies, at every token, the program's
  test outcome (pass, fail, runtime_error, syntax_error; timeouts, memory errors and
  output-limit stops count as runtime_error, see `reward.feedback.outcome_class`). The token
  rewards are weighted by the per-token probability of the outcome actually observed.

Design choice: the heads read the CURRENT policy's hidden states, detached. The critic thus
follows the policy it judges at every step at no extra forward pass, while its loss never
changes the policy (the heads' `forward` detaches its input, so no gradient of the critic's
loss can reach the policy's parameters). The policy is trained only through the advantages or
weights, which are detached too.

Alignment: the critic's output at label position t is read from the hidden state that
predicts y_t, i.e. the state before y_t is chosen (`label_states`): for decoder-only models
the state at t-1 (as `token_logprobs` shifts the logits), for encoder-decoders the decoder
state at t (its input is y_{t-1}), as in CodeRL's T5 critic. V_t is then a function of the
prefix only, a valid baseline for the choice of y_t.

Pure functions below take [B, T] tensors (B = batch, T = label positions, K = outcome
classes) and a float mask of the counted tokens. `Critic` owns a head and its optimiser; an
objective calls `critic.backward(loss)` on each micro-batch and the engine calls
`critic.step(world_size)` once per optimiser step. No Ray, no DeepSpeed.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from reward.feedback import OUTCOME_CLASSES, outcome_class

KINDS = ("value", "outcome")


def outcome_id(outcome: str) -> int:
    """Class index of an executor outcome in `OUTCOME_CLASSES` (timeout -> runtime_error)."""
    return OUTCOME_CLASSES.index(outcome_class(outcome))


def label_states(hidden: torch.Tensor, shift: bool) -> torch.Tensor:
    """[B, T, H] last hidden states -> [B, T, H] the state that predicts each label position.

    shift=True (decoder-only): position t gets the state at t-1; position 0 (never a label)
    gets zeros. shift=False (encoder-decoder decoder states): unchanged."""
    if not shift:
        return hidden
    return F.pad(hidden[:, :-1, :], (0, 0, 1, 0))


class _MLP(nn.Module):
    """Linear -> tanh -> Linear, in fp32 on a detached input."""

    def __init__(self, hidden_size: int, mlp_size: int, out: int):
        super().__init__()
        self.fc = nn.Linear(hidden_size, mlp_size)
        self.out = nn.Linear(mlp_size, out)
        # The output starts at zero: V = 0 (A_t = G_t, plain RLTF without baseline) and
        # uniform outcome probabilities (weights 1/K) before the first step.
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        x = hidden.detach().to(self.fc.weight.dtype)  # the critic never trains the policy
        return self.out(torch.tanh(self.fc(x)))


class ValueHead(_MLP):
    """Value per position: [B, T, H] hidden states -> [B, T]."""

    def __init__(self, hidden_size: int, mlp_size: int = 512):
        super().__init__(hidden_size, mlp_size, 1)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return super().forward(hidden).squeeze(-1)


class OutcomeHead(_MLP):
    """Per-token outcome logits: [B, T, H] hidden states -> [B, T, K]."""

    def __init__(self, hidden_size: int, n_outcomes: int = len(OUTCOME_CLASSES),
                 mlp_size: int = 512):
        super().__init__(hidden_size, mlp_size, n_outcomes)


# -- pure functions --------------------------------------------------------------------------

def _count(mask: torch.Tensor) -> torch.Tensor:
    return mask.sum().clamp(min=1.0)


def advantages(returns: torch.Tensor, values: torch.Tensor, mask: torch.Tensor,
               normalize: bool = False, eps: float = 1e-8) -> torch.Tensor:
    """A_t = G_t - V_t (values detached), 0 where mask is 0. [B, T] -> [B, T].

    normalize: whiten over the counted tokens, (A - mean) / sqrt(var + eps), with the
    population variance."""
    mask = mask.to(returns.dtype)
    adv = (returns - values.detach().to(returns.dtype)) * mask
    if normalize:
        n = _count(mask)
        mean = adv.sum() / n
        var = (((adv - mean) * mask) ** 2).sum() / n
        adv = (adv - mean) / torch.sqrt(var + eps) * mask
    return adv


def value_loss(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor
               ) -> torch.Tensor:
    """Mean over counted tokens of (V_t - G_t)^2."""
    mask = mask.to(values.dtype)
    return (((values - returns.to(values.dtype)) ** 2) * mask).sum() / _count(mask)


def _per_token(outcome_ids: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """[B] sample outcomes -> [B, T] (a [B, T] tensor passes unchanged)."""
    ids = outcome_ids.long()
    if ids.dim() == 1:
        ids = ids.unsqueeze(1).expand(like.shape[0], like.shape[1])
    return ids


def outcome_weights(logits: torch.Tensor, outcome_ids: torch.Tensor, mask: torch.Tensor
                    ) -> torch.Tensor:
    """Per-token probability of the observed outcome, softmax(logits_t)[u], detached; 0 where
    mask is 0. logits [B, T, K], outcome_ids [B] (or [B, T]) -> [B, T]."""
    ids = _per_token(outcome_ids, logits)
    prob = torch.softmax(logits.detach().float(), dim=-1)
    return prob.gather(-1, ids.unsqueeze(-1)).squeeze(-1) * mask.to(prob.dtype)


def outcome_loss(logits: torch.Tensor, outcome_ids: torch.Tensor, mask: torch.Tensor
                 ) -> torch.Tensor:
    """Cross-entropy of the observed outcome, mean over counted tokens."""
    ids = _per_token(outcome_ids, logits)
    logp = torch.log_softmax(logits.float(), dim=-1)
    nll = -logp.gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    mask = mask.to(nll.dtype)
    return (nll * mask).sum() / _count(mask)


# -- the critic a learner rank owns ------------------------------------------------------------

class Critic:
    """A head and its AdamW optimiser, identical on every rank.

    The head is initialised from `seed` (not from the rank's RNG), and `step` averages the
    gradients over the torch.distributed group, so all ranks hold the same critic."""

    def __init__(self, kind: str, hidden_size: int, mlp_size: int = 512, lr: float = 1e-4,
                 weight_decay: float = 0.0, grad_clip: float | None = 1.0,
                 grad_accum: int = 1, seed: int = 0, device: torch.device | str = "cpu"):
        if kind not in KINDS:
            raise ValueError(f"unknown critic {kind!r}: use one of {KINDS}")
        self.kind, self.grad_clip, self.grad_accum = kind, grad_clip, grad_accum
        self.config = {"kind": kind, "hidden_size": hidden_size, "mlp_size": mlp_size}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.head = (ValueHead(hidden_size, mlp_size) if kind == "value"
                         else OutcomeHead(hidden_size, mlp_size=mlp_size))
        self.head.to(device)
        self.optimizer = torch.optim.AdamW(self.head.parameters(), lr=lr,
                                           weight_decay=weight_decay)
        self.steps = 0
        self._backwards = 0  # backward() calls since the last step

    def __call__(self, hidden: torch.Tensor) -> torch.Tensor:
        """Values [B, T] or outcome logits [B, T, K] from [B, T, H] hidden states."""
        return self.head(hidden)

    def backward(self, loss: torch.Tensor) -> None:
        """Accumulate the gradient of one micro-batch's loss (divided by grad_accum, as
        DeepSpeed divides the policy's loss)."""
        (loss / self.grad_accum).backward()
        self._backwards += 1

    def step(self, world_size: int = 1) -> dict[str, float]:
        """Average the gradients over the ranks (when world_size > 1), clip, step, zero.

        Collective when world_size > 1: every rank must call it. A step in which no rank
        called `backward` changes nothing."""
        params = list(self.head.parameters())
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        count = torch.tensor([float(self._backwards)], device=params[0].device)
        if world_size > 1:
            import torch.distributed as dist

            flat = torch.cat([g.reshape(-1).float() for g in grads] + [count])
            dist.all_reduce(flat, op=dist.ReduceOp.SUM)
            count = flat[-1:]
            flat = flat[:-1] / world_size
            offset = 0
            for p, g in zip(params, grads):
                n = g.numel()
                p.grad = flat[offset:offset + n].view_as(p).to(p.dtype)
                offset += n
        self._backwards = 0
        if float(count) == 0:
            self.optimizer.zero_grad(set_to_none=True)
            return {}
        for p, g in zip(params, grads):
            if p.grad is None:
                p.grad = g
        norm = torch.nn.utils.clip_grad_norm_(params, self.grad_clip or float("inf"))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.steps += 1
        return {"critic/grad_norm": float(norm)}

    def state_dict(self) -> dict:
        """A copy (never aliasing the live weights or Adam moments)."""
        return copy.deepcopy({"config": self.config, "head": self.head.state_dict(),
                              "optimizer": self.optimizer.state_dict(), "steps": self.steps})

    def load_state_dict(self, state: dict) -> None:
        if state["config"] != self.config:
            raise ValueError(f"critic checkpoint is {state['config']}, this critic is "
                             f"{self.config}: set learner.critic / learner.critic_hidden to match")
        self.head.load_state_dict(state["head"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.steps = int(state["steps"])
