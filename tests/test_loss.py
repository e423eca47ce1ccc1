"""The RLTF objective on tensors, with hand-worked numbers, and a gradient test."""

from __future__ import annotations

import math

import pytest
import torch

from learner.batch import TrainBatch, collate
from learner.loss import (IGNORE, combine, label_mask, policy_gradient_loss, supervised_loss,
                          token_logprobs)


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


def test_kl_penalty_and_supervised_and_combine():
    logp = torch.tensor([[-1.0, -3.0]])
    ref = torch.tensor([[-2.0, -3.0]])
    mask = torch.ones(1, 2)
    loss, st = policy_gradient_loss(logp, torch.zeros(1, 2), mask, ref_logp=ref, kl_coef=0.5)
    # KL estimate mean(logp - ref) = (1 + 0) / 2 = 0.5; loss = 0.5 * 0.5
    assert st.kl == pytest.approx(0.5) and loss.item() == pytest.approx(0.25)
    assert supervised_loss(logp, mask).item() == pytest.approx(2.0)
    rl, sl = torch.tensor(1.0), torch.tensor(2.0)
    assert combine(rl, sl, 0.1).item() == pytest.approx(1.2)
    assert combine(rl, sl, 0.1, "alternate", step=0).item() == 1.0
    assert combine(rl, sl, 0.1, "alternate", step=1).item() == pytest.approx(0.2)
    assert combine(None, sl, 0.5).item() == 1.0


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
    loss, _ = RLTFObjective(sl_weight=0.0, ratio_max=None)(Engine(), TrainBatch(rl=batch))
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
    loss, metrics = RLTFObjective(sl_weight=0.0)(Engine(), TrainBatch(rl=batch))
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
