"""Critic heads and their losses, with hand-worked numbers (no Ray, no DeepSpeed)."""

from __future__ import annotations

import math

import pytest
import torch

from learner.batch import TrainBatch, collate
from learner.critic import (Critic, OutcomeHead, ValueHead, advantages, label_states,
                            outcome_id, outcome_loss, outcome_weights, value_loss)

# Two samples, three label positions; the second is padded at its last position.
# Sample 0 failed with an error on its second token's line: R = -0.3, fine-grained penalty
# 0.3 on that token, no baseline -> r = [-0.3, -0.6, -0.3]. Sample 1 passed: r = [1, 1, .].
RETURNS = torch.tensor([[-0.3, -0.6, -0.3], [1.0, 1.0, 0.0]])
VALUES = torch.tensor([[0.1, -0.2, 0.5], [0.5, 1.0, 7.0]])
MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])


def test_advantages_are_returns_minus_values_on_counted_tokens():
    values = VALUES.clone().requires_grad_(True)
    adv = advantages(RETURNS, values, MASK)
    # G - V: [-0.3-0.1, -0.6+0.2, -0.3-0.5] = [-0.4, -0.4, -0.8]; [1-0.5, 1-1, (padding) 0]
    assert adv.tolist() == [pytest.approx([-0.4, -0.4, -0.8]), pytest.approx([0.5, 0.0, 0.0])]
    assert not adv.requires_grad  # values are detached: the policy loss never trains V


def test_whitened_advantages():
    adv = advantages(RETURNS, VALUES, MASK, normalize=True)
    # counted A: -0.4, -0.4, -0.8, 0.5, 0.0 -> mean -1.1 / 5 = -0.22
    # deviations -0.18, -0.18, -0.58, 0.72, 0.22; squares .0324 .0324 .3364 .5184 .0484
    # variance .968 / 5 = .1936, std .44 -> (A - mean) / .44; padding stays 0
    expected = [[-0.18 / 0.44, -0.18 / 0.44, -0.58 / 0.44], [0.72 / 0.44, 0.22 / 0.44, 0.0]]
    assert adv.tolist() == [pytest.approx(r, abs=1e-5) for r in expected]


def test_value_loss_and_its_gradient():
    values = VALUES.clone().requires_grad_(True)
    loss = value_loss(values, RETURNS, MASK)
    # (V - G)^2 on counted tokens: .16 .16 .64 .25 0 -> 1.21 / 5 = 0.242
    assert loss.item() == pytest.approx(0.242)
    loss.backward()
    # d/dV = 2 (V - G) / 5: [.16, .16, .32], [-.2, 0, 0 (padding)]
    assert values.grad.tolist() == [pytest.approx([0.16, 0.16, 0.32]),
                                    pytest.approx([-0.2, 0.0, 0.0])]


def test_outcome_mapping_reuses_the_reward_vocabulary():
    assert [outcome_id(o) for o in ("pass", "fail", "runtime_error", "syntax_error")] == \
        [0, 1, 2, 3]
    assert outcome_id("timeout") == outcome_id("memory_error") == outcome_id("output_limit") \
        == 2
    with pytest.raises(ValueError, match="unknown outcome"):
        outcome_id("crashed")


def test_outcome_weights_and_loss():
    a = [math.log(6), math.log(2), 0.0, 0.0]  # softmax: 6/10, 2/10, 1/10, 1/10
    b = [0.0, 0.0, 0.0, 0.0]  # 1/4 each
    logits = torch.tensor([[a, b], [a, b]], requires_grad=True)  # [2, 2, 4]
    outcomes = torch.tensor([outcome_id("fail"), outcome_id("timeout")])  # 1 and 2
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    w = outcome_weights(logits, outcomes, mask)
    # sample 0 (fail): p(fail) = 2/10 at a, 1/4 at b; sample 1 (runtime): 1/10 at a, padding 0
    assert w.tolist() == [pytest.approx([0.2, 0.25]), pytest.approx([0.1, 0.0])]
    assert not w.requires_grad  # weights, not a path for the policy loss into the critic
    loss = outcome_loss(logits, outcomes, mask)
    # -(log .2 + log .25 + log .1) / 3 = log(5 * 4 * 10) / 3
    assert loss.item() == pytest.approx(math.log(200) / 3)


def test_label_states_shift_like_the_logits():
    h = torch.arange(6.0).view(1, 3, 2)  # positions 0, 1, 2
    # decoder-only: label t is predicted from the state at t-1; position 0 gets zeros
    assert label_states(h, shift=True).tolist() == [[[0, 0], [0, 1], [2, 3]]]
    assert torch.equal(label_states(h, shift=False), h)


def _tiny_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=20,
                                      n_positions=16, resid_pdrop=0, embd_pdrop=0,
                                      attn_pdrop=0))


def test_the_critic_loss_never_reaches_the_policy():
    from learner.objectives import policy_forward

    torch.set_num_threads(1)
    model = _tiny_gpt2()
    batch = collate([[1, 2]], [[3, 4, 5]], rewards=[[1.0] * 3], pad_id=0)
    _, states = policy_forward(model, batch, hidden=True)
    assert states.requires_grad  # the policy's graph is there ...
    for head in (ValueHead(16, 8), OutcomeHead(16, mlp_size=8)):
        torch.nn.init.normal_(head.out.weight)  # non-zero, so gradients flow to fc
        out = head(states)
        loss = out.pow(2).sum()
        loss.backward(retain_graph=True)
        # ... but the head detaches its input: only the head gets gradients
        assert all(p.grad is None for p in model.parameters())
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())


def test_value_head_fits_fixed_states():
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(4, 5, 8, generator=g)
    returns = torch.randn(4, 5, generator=g)
    mask = torch.ones(4, 5)
    critic = Critic("value", hidden_size=8, mlp_size=16, lr=1e-2)
    losses = []
    for _ in range(30):
        loss = value_loss(critic(hidden), returns, mask)
        critic.backward(loss)
        critic.step()
        losses.append(loss.item())
    # V starts at 0 (zero-initialised output): loss = mean G^2
    assert losses[0] == pytest.approx(returns.pow(2).mean().item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_critic_state_round_trip_gives_identical_next_steps():
    g = torch.Generator().manual_seed(1)
    hidden = torch.randn(2, 3, 8, generator=g)
    outcomes = torch.tensor([0, 3])
    mask = torch.ones(2, 3)

    def one_step(c: Critic) -> float:
        loss = outcome_loss(c(hidden), outcomes, mask)
        c.backward(loss)
        c.step()
        return loss.item()

    a = Critic("outcome", hidden_size=8, mlp_size=16, lr=1e-2, seed=0)
    for _ in range(3):
        one_step(a)
    b = Critic("outcome", hidden_size=8, mlp_size=16, lr=1e-2, seed=123)
    b.load_state_dict(a.state_dict())
    assert b.steps == 3
    for _ in range(2):  # Adam's moments came along too: the next steps agree exactly
        assert one_step(a) == one_step(b)
    for pa, pb in zip(a.head.parameters(), b.head.parameters()):
        assert torch.equal(pa, pb)
    with pytest.raises(ValueError, match="critic_hidden"):
        Critic("outcome", hidden_size=8, mlp_size=32).load_state_dict(a.state_dict())


def test_a_step_without_backward_changes_nothing():
    critic = Critic("value", hidden_size=4, mlp_size=4)
    before = [p.clone() for p in critic.head.parameters()]
    assert critic.step() == {}
    assert all(torch.equal(a, b) for a, b in zip(before, critic.head.parameters()))


class _Engine:
    """What an objective needs of the learner's PolicyHandle."""

    def __init__(self, model, critic):
        self.model, self.critic = model, critic
        self.device, self.global_steps = torch.device("cpu"), 0

    def __call__(self, **kw):
        return self.model(**kw)


@pytest.mark.parametrize("kind,scale", [("value", 1.0), ("outcome", 0.25)])
def test_a_fresh_critic_reproduces_the_plain_objective(kind, scale):
    from core.config import LearnerConfig
    from learner.objectives import ActorCriticObjective, RLTFObjective

    torch.set_num_threads(1)
    model = _tiny_gpt2()
    batch = collate([[1, 2], [3]], [[4, 5, 6], [7, 8]], rewards=[[-0.3, -0.6, -0.3], [1, 1]],
                    pad_id=0, outcomes=["runtime_error", "pass"])
    assert batch.outcomes.tolist() == [2, 0]
    engine = _Engine(model, Critic(kind, hidden_size=16, mlp_size=8))
    lc = LearnerConfig(sl_weight=0.0, clip_eps=None, critic=kind)
    plain, _ = RLTFObjective(lc)(engine, TrainBatch(rl=batch))
    loss, metrics = ActorCriticObjective(lc)(engine, TrainBatch(rl=batch))
    # zero-initialised output: V = 0, so A = G; or q = 1/4 for each of the four outcomes
    assert loss.item() == pytest.approx(scale * plain.item(), rel=1e-5)
    key = "critic/value_loss" if kind == "value" else "critic/outcome_loss"
    expected = ((0.09 + 0.36 + 0.09 + 1 + 1) / 5 if kind == "value" else math.log(4))
    assert metrics[key] == pytest.approx(expected, rel=1e-5)
    assert all(p.grad is not None for p in engine.critic.head.parameters())
    with pytest.raises(ValueError, match="EngineSettings"):
        ActorCriticObjective(LearnerConfig(critic="outcome" if kind == "value" else "value"))(
            engine, TrainBatch(rl=batch))


def _two_rank_worker(rank: int, port: int, out):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=2)
    torch.set_num_threads(1)
    critic = Critic("value", hidden_size=4, mlp_size=4, lr=0.1, seed=0)
    hidden = torch.full((1, 2, 4), float(rank + 1))  # each rank sees different data
    torch.nn.init.normal_(critic.head.out.weight, generator=torch.Generator().manual_seed(0))
    loss = value_loss(critic(hidden), torch.full((1, 2), float(rank)), torch.ones(1, 2))
    critic.backward(loss)
    critic.step(world_size=2)
    out.put((rank, [p.detach().flatten().tolist() for p in critic.head.parameters()]))
    dist.destroy_process_group()


def test_two_ranks_stay_identical():
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("fork")  # torch is already imported: no second start-up
    out = ctx.Queue()
    procs = [ctx.Process(target=_two_rank_worker, args=(r, port, out)) for r in range(2)]
    for p in procs:
        p.start()
    got = dict(out.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(timeout=30)
    # different data, averaged gradients: the same weights on both ranks after the step
    assert got[0] == got[1]
