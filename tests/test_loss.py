"""The RLTF objective on tensors, with hand-worked numbers, and a gradient test."""

from __future__ import annotations

import math

import pytest
import torch

from core.config import LearnerConfig
from learner.batch import TrainBatch, collate
from learner.loss import (IGNORE, combine, kl_penalty, label_mask, policy_gradient_loss,
                          supervised_loss, token_logprobs)


def test_token_logprobs_shift_and_mask():
    # Vocabulary of 2; logits favour token 1 by log 3 at every position:
    # p(1) = 3/4, p(0) = 1/4.
    logits = torch.tensor([[[0.0, math.log(3)]] * 3])  # [1, 3, 2]
    labels = torch.tensor([[IGNORE, 1, 0]])  # position 0 is prompt
    # decoder-only: label at t is scored by logits at t-1
    lp = token_logprobs(logits, labels, shift=True)
    assert lp.shape == (1, 3)
    assert lp[0].tolist() == pytest.approx([0.0, math.log(0.75), math.log(0.25)])
    # encoder-decoder: no shift
    lp2 = token_logprobs(logits, torch.tensor([[1, IGNORE, 0]]), shift=False)
    assert lp2[0].tolist() == pytest.approx([math.log(0.75), 0.0, math.log(0.25)])


def test_policy_gradient_loss_hand_numbers_with_padding():
    # two samples, second padded: counted tokens = 3
    logp = torch.tensor([[-1.0, -2.0], [-0.5, 0.0]], requires_grad=True)
    rewards = torch.tensor([[1.0, -0.5], [2.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    loss, st = policy_gradient_loss(logp, rewards, mask)
    # -(1*-1 + -0.5*-2 + 2*-0.5) / 3 = -(-1 + 1 - 1) / 3 = 1/3
    assert loss.item() == pytest.approx(1 / 3)
    assert st.tokens == 3
    loss.backward()
    # d loss / d logp = -r / 3 on counted tokens, 0 on padding
    assert logp.grad.flatten().tolist() == pytest.approx([-1 / 3, 0.5 / 3, -2 / 3, 0.0])


def test_importance_ratio_is_truncated_and_detached():
    logp = torch.tensor([[0.0, 0.0]], requires_grad=True)
    behaviour = torch.tensor([[math.log(0.5), 0.0]])  # ratio 2 and 1
    rewards = torch.ones(1, 2)
    mask = torch.ones(1, 2)
    loss, st = policy_gradient_loss(logp, rewards, mask, behaviour, ratio_max=1.5)
    # weights: min(2, 1.5) = 1.5 and 1 -> loss = -(1.5*0 + 1*0)/2 = 0; grad = -w/2
    loss.backward()
    assert logp.grad.flatten().tolist() == pytest.approx([-0.75, -0.5])
    assert st.clipped_frac == pytest.approx(0.5)
    assert st.ratio_mean == pytest.approx(1.25)


def test_supervised_loss_and_combine():
    logp = torch.tensor([[-1.0, -3.0]])
    mask = torch.ones(1, 2)
    assert supervised_loss(logp, mask).item() == pytest.approx(2.0)
    rl, sl = torch.tensor(1.0), torch.tensor(2.0)
    assert combine(rl, sl, 0.1).item() == pytest.approx(1.2)  # mix: 1 + 0.1 * 2
    assert combine(None, sl, 0.5).item() == 1.0
    # alternate: a micro-batch holds one term, returned as rl or sl_weight * sl
    assert combine(rl, None, 0.1, "alternate").item() == 1.0
    assert combine(None, sl, 0.1, "alternate").item() == pytest.approx(0.2)
    with pytest.raises(ValueError, match="not both"):
        combine(rl, sl, 0.1, "alternate")
    with pytest.raises(ValueError, match="mix or alternate"):
        combine(rl, sl, 0.1, "sometimes")


def test_k3_kl_gradient_hand_worked():
    # Three positions; the third is padding (mask 0), given odd values that must not count.
    # d = log pi_ref - log pi:   token 0: d = ln 2 (the reference finds it twice as likely)
    #                            token 1: d = -ln 2 (half as likely)
    # k3 = e^d - d - 1:          token 0: 2 - ln 2 - 1 = 1 - ln 2
    #                            token 1: 1/2 + ln 2 - 1 = ln 2 - 1/2
    # KL estimate = mean over the 2 counted tokens = (1 - ln 2 + ln 2 - 1/2) / 2 = 1/4
    # d k3 / d log pi = -e^d + 1:  token 0: 1 - 2 = -1;  token 1: 1 - 1/2 = +1/2
    # loss = kl_coef * KL with kl_coef = 0.1 and zero rewards, so
    # d loss / d log pi = 0.1 * [-1, 1/2] / 2 = [-0.05, +0.025], and 0 on the padding.
    # Descent raises token 0's log-prob and lowers token 1's: both move toward the reference.
    ln2 = math.log(2)
    logp = torch.tensor([[-1.0, -2.0, -0.7]], requires_grad=True)
    ref = torch.tensor([[-1.0 + ln2, -2.0 - ln2, -5.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    loss, st = policy_gradient_loss(logp, torch.zeros(1, 3), mask, ref_logp=ref, kl_coef=0.1)
    assert st.kl == pytest.approx(0.25, abs=1e-6)
    assert loss.item() == pytest.approx(0.025, abs=1e-7)
    loss.backward()
    assert logp.grad[0].tolist() == pytest.approx([-0.05, 0.025, 0.0], abs=1e-7)


def test_k2_kl_gradient_hand_worked():
    # k2 = d^2 / 2 with d = log pi_ref - log pi; d k2 / d log pi = -d = log pi - log pi_ref.
    # token 0: d = ln 2 -> k2 = (ln 2)^2 / 2, gradient -ln 2; token 1: d = -0.5 -> k2 = 0.125,
    # gradient +0.5. Mean over 2 tokens, kl_coef 1: gradient [-ln 2 / 2, 0.25].
    ln2 = math.log(2)
    logp = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    ref = torch.tensor([[-1.0 + ln2, -2.5]])
    loss, st = policy_gradient_loss(logp, torch.zeros(1, 2), torch.ones(1, 2), ref_logp=ref,
                                    kl_coef=1.0, kl_estimator="k2")
    assert st.kl == pytest.approx((ln2 ** 2 / 2 + 0.125) / 2, abs=1e-6)
    loss.backward()
    assert logp.grad[0].tolist() == pytest.approx([-ln2 / 2, 0.25], abs=1e-6)
    with pytest.raises(ValueError, match="KL estimator"):
        kl_penalty(logp, ref, "k1")


@pytest.mark.parametrize("estimator", ["k3", "k2"])
def test_kl_gradient_depends_on_the_reference(estimator):
    # The same policy log-probs and rewards, two different references: the gradients differ
    # (the plain estimate log pi - log pi_ref has the gradient 1/n whatever the reference).
    # Where the reference equals the policy, the KL term's gradient is zero.
    logp0 = torch.tensor([[-1.0, -2.0, -0.5]])
    rewards = torch.tensor([[0.5, -0.5, 1.0]])
    mask = torch.ones(1, 3)

    def grad(ref):
        logp = logp0.clone().requires_grad_(True)
        loss, _ = policy_gradient_loss(logp, rewards, mask, ref_logp=ref, kl_coef=0.2,
                                       kl_estimator=estimator)
        (g,) = torch.autograd.grad(loss, logp)
        return g

    near, far = logp0 + 0.1, logp0 - 1.0
    assert not torch.allclose(grad(near), grad(far))
    pg_only = -rewards / 3  # the policy-gradient term alone: -r / n
    assert torch.allclose(grad(logp0.clone()), pg_only, atol=1e-7)


def test_collate_decoder_only_and_encoder_decoder():
    b = collate([[5, 6], [7]], [[8], [9, 10]], rewards=[[1.0], [2.0, 3.0]],
                logprobs=[[-0.1], [-0.2, -0.3]], pad_id=0)
    # sequences: [5,6,8] and [7,9,10]; labels only on completion positions
    assert b.input_ids.tolist() == [[5, 6, 8], [7, 9, 10]]
    assert b.labels.tolist() == [[IGNORE, IGNORE, 8], [IGNORE, 9, 10]]
    assert b.token_rewards.tolist() == [[0, 0, 1.0], [0, 2.0, 3.0]]
    assert label_mask(b.labels).sum().item() == 3
    e = collate([[5, 6], [7]], [[8], [9, 10]], pad_id=0, encoder_decoder=True)
    assert e.input_ids.tolist() == [[5, 6], [7, 0]]
    assert e.attention_mask.tolist() == [[1, 1], [1, 0]]
    assert e.labels.tolist() == [[8, IGNORE], [9, 10]]


def _tiny_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=20,
                                      n_positions=16, resid_pdrop=0, embd_pdrop=0,
                                      attn_pdrop=0))


@pytest.mark.parametrize("reward", [-1.0, 1.0])
def test_one_step_moves_log_probability_with_the_sign_of_the_reward(reward):
    from learner.objectives import RLTFObjective, policy_logprobs

    torch.set_num_threads(1)
    model = _tiny_gpt2()
    batch = collate([[1, 2, 3]], [[4, 5, 6]], rewards=[[reward] * 3], pad_id=0)

    class Engine:  # what the objective needs of a DeepSpeed engine
        device = torch.device("cpu")
        global_steps = 0

        def __call__(self, **kw):
            return model(**kw)

    with torch.no_grad():
        before = policy_logprobs(Engine(), batch).sum().item()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    objective = RLTFObjective(LearnerConfig(sl_weight=0.0, clip_eps=None))
    loss, _ = objective(Engine(), TrainBatch(rl=batch))
    loss.backward()
    opt.step()
    with torch.no_grad():
        after = policy_logprobs(Engine(), batch).sum().item()
    assert (after - before) * reward > 0, (before, after)


def test_encoder_decoder_objective_runs():
    from transformers import T5Config, T5ForConditionalGeneration

    from learner.objectives import RLTFObjective

    torch.manual_seed(0)
    model = T5ForConditionalGeneration(T5Config(vocab_size=20, d_model=16, d_ff=32, d_kv=8,
                                                num_layers=1, num_heads=2,
                                                decoder_start_token_id=0, pad_token_id=0))

    class Engine:
        device = torch.device("cpu")
        global_steps = 0

        def __call__(self, **kw):
            return model(**kw)

    batch = collate([[3, 4], [5]], [[6, 7], [8]], rewards=[[1.0, 1.0], [-1.0]], pad_id=0,
                    encoder_decoder=True)
    objective = RLTFObjective(LearnerConfig(sl_weight=0.0, importance_ratio_max=2.0,
                                            clip_eps=None))
    loss, metrics = objective(Engine(), TrainBatch(rl=batch))
    assert torch.isfinite(loss) and metrics["tokens"] == 3


def test_clipped_surrogate_stops_the_gradient_outside_the_trust_region():
    import math

    from learner.loss import policy_gradient_loss

    eps = 0.2
    # Four tokens, behaviour prob 0.5 each; current probs 0.5, 0.3, 0.75, 0.3; rewards
    # -1, -1, +1, +1. Ratios rho = 1.0, 0.6, 1.5, 0.6.
    #  t0: rho 1, r -1: min(-1, -1) = -1 -> term 1, gradient wrt log pi = -r*rho = +1
    #      (loss grows with log pi: descent pushes the token down)
    #  t1: rho 0.6 < 0.8, r -1: min(-0.6, -0.8) = -0.8 (clipped, constant) -> term 0.8, grad 0
    #  t2: rho 1.5 > 1.2, r +1: min(1.5, 1.2) = 1.2 (clipped) -> term -1.2, grad 0
    #  t3: rho 0.6, r +1: min(0.6, 0.8) = 0.6 -> term -0.6, grad -r*rho = -0.6
    # loss = (1 + 0.8 - 1.2 - 0.6) / 4 = 0.0; gradients / 4: [0.25, 0, 0, -0.15]
    logp = torch.tensor([[math.log(0.5), math.log(0.3), math.log(0.75), math.log(0.3)]],
                        requires_grad=True)
    mu = torch.full((1, 4), math.log(0.5))
    r = torch.tensor([[-1.0, -1.0, 1.0, 1.0]])
    mask = torch.ones(1, 4)
    loss, st = policy_gradient_loss(logp, r, mask, behaviour_logp=mu, clip_eps=eps)
    loss.backward()
    assert float(loss.detach()) == pytest.approx(0.0, abs=1e-6)
    assert logp.grad.tolist()[0] == pytest.approx([0.25, 0.0, 0.0, -0.15], abs=1e-6)
    assert st.clipped_frac == pytest.approx(0.5)
    assert st.ratio_mean == pytest.approx((1.0 + 0.6 + 1.5 + 0.6) / 4)
    with pytest.raises(ValueError, match="behaviour"):
        policy_gradient_loss(logp, r, mask, clip_eps=eps)


def test_clipped_surrogate_equals_policy_gradient_on_policy():
    # With pi == mu every ratio is 1 and the gradient equals plain REINFORCE's.
    from learner.loss import policy_gradient_loss

    g = torch.Generator().manual_seed(0)
    logp = torch.log_softmax(torch.randn(2, 5, generator=g), -1).requires_grad_(True)
    r = torch.randn(2, 5, generator=g)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.float32)
    a, _ = policy_gradient_loss(logp, r, mask, behaviour_logp=logp.detach(), clip_eps=0.2)
    (ga,) = torch.autograd.grad(a, logp)
    b, _ = policy_gradient_loss(logp, r, mask)
    (gb,) = torch.autograd.grad(b, logp)
    assert torch.allclose(ga, gb, atol=1e-6)  # (the loss values differ: -r vs -r log pi)


class _TableLM(torch.nn.Module):
    """A language model whose logits at position t are a free parameter row, whatever the
    input: its gradients can be worked out by hand (d -log softmax(z)_y / dz = p - onehot(y))."""

    def __init__(self, positions: int = 3, vocab: int = 2):
        super().__init__()
        self.table = torch.nn.Parameter(torch.zeros(positions, vocab))  # p = [1/2, 1/2]

    def forward(self, input_ids, attention_mask=None, **kw):
        from types import SimpleNamespace

        b, t = input_ids.shape
        return SimpleNamespace(logits=self.table[:t].unsqueeze(0).expand(b, t, -1))


def _accumulated_grad(objective, micro_batches) -> torch.Tensor:
    """One optimizer step's gradient as the learner forms it: DeepSpeed divides each
    micro-batch's loss by the number of micro-batches (gradient accumulation) and sums."""
    model = _TableLM()

    class Engine:
        device = torch.device("cpu")

        def __call__(self, **kw):
            return model(**kw)

    for mb in micro_batches:
        loss, _ = objective(Engine(), mb)
        (loss / len(micro_batches)).backward()
    return model.table.grad


# Decoder-only, prompt [0]; labels at position t are scored by the logits row t - 1.
# SL: completion [1]: one token, label 1 at position 1 -> row 0.
#     d(-log p(1))/d row0 = p - onehot(1) = [1/2, -1/2]
# RL: completion [0, 1], token rewards [1, -1/2], plain policy gradient (n = 2 tokens):
#     row 0 (label 0, r = 1):     r (p - onehot(0)) / 2 = [-1/2, 1/2] / 2 = [-1/4, 1/4]
#     row 1 (label 1, r = -1/2): r (p - onehot(1)) / 2 = -1/2 [1/2, -1/2] / 2 = [-1/8, 1/8]
SL = collate([[0]], [[1]], pad_id=0)
RL = collate([[0]], [[0, 1]], rewards=[[1.0, -0.5]], logprobs=[[-math.log(2)] * 2], pad_id=0)


def test_alternate_accumulates_the_sl_gradient_of_one_micro_batch_and_rl_of_the_other():
    from learner.objectives import RLTFObjective

    # Two micro-batches, supervised then RL (the driver's layout); sl_weight 1:
    #   row 0: ([1/2, -1/2] + [-1/4, 1/4]) / 2 = [1/8, -1/8]
    #   row 1: ([0, 0] + [-1/8, 1/8]) / 2 = [-1/16, 1/16];  row 2: 0
    obj = RLTFObjective(LearnerConfig(sl_weight=1.0, sl_mode="alternate", clip_eps=None))
    g = _accumulated_grad(obj, [TrainBatch(rl=None, sl=SL), TrainBatch(rl=RL)])
    assert g.flatten().tolist() == pytest.approx([0.125, -0.125, -0.0625, 0.0625, 0.0, 0.0])
    # a micro-batch holding both terms is refused in alternate mode
    with pytest.raises(ValueError, match="not both"):
        _accumulated_grad(obj, [TrainBatch(rl=RL, sl=SL)])


def test_mix_accumulates_the_weighted_sum_on_each_micro_batch():
    from learner.objectives import RLTFObjective

    # Two micro-batches, each RL + sl_weight * SL with sl_weight 2:
    #   row 0: [-1/4, 1/4] + 2 [1/2, -1/2] = [3/4, -3/4];  row 1: [-1/8, 1/8];  row 2: 0
    # averaged over the two (identical) micro-batches: the same. (Alternate gave half of
    # each term: every micro-batch there carries one term, not both.)
    obj = RLTFObjective(LearnerConfig(sl_weight=2.0, sl_mode="mix", clip_eps=None))
    g = _accumulated_grad(obj, [TrainBatch(rl=RL, sl=SL), TrainBatch(rl=RL, sl=SL)])
    assert g.flatten().tolist() == pytest.approx([0.75, -0.75, -0.125, 0.125, 0.0, 0.0])
