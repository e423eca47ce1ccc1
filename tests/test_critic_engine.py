"""Actor–critic training on a real single-rank DeepSpeed engine (CPU, gloo, ZeRO 0)."""

from __future__ import annotations

import math

import pytest
import torch

from core.config import LearnerConfig
from learner.batch import TrainBatch, collate
from tiny_models import make_gpt2, make_t5

pytestmark = pytest.mark.integration


def _settings(path: str, critic: str):
    from learner.engine import EngineSettings

    learner = LearnerConfig(lr=1e-4, warmup_steps=0, zero_stage=0, micro_batch_size=2,
                            precision="fp32", critic=critic or "value", critic_lr=1e-2,
                            critic_hidden=32)
    return EngineSettings(model_path=path, learner=learner, grad_accum=1, critic=bool(critic))


def _batch(encoder_decoder: bool = False) -> TrainBatch:
    # a runtime error blamed on the middle tokens (R = -0.6, penalty 0.3 there, no baseline)
    # and a pass (R = 1)
    rl = collate([[5, 6, 7], [8, 9]], [[10, 11, 12, 13], [14, 15, 16]],
                 rewards=[[-0.6, -0.9, -0.9, -0.6], [1.0, 1.0, 1.0]], pad_id=1,
                 encoder_decoder=encoder_decoder, outcomes=["timeout", "pass"])
    return TrainBatch(rl=rl)


def _heads_equal(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.head.state_dict().values(),
                                                 b.head.state_dict().values()))


def test_value_critic_learns_and_resumes_exactly(single_rank, tmp_path):
    from learner.engine import PolicyEngine
    from learner.objectives import ActorCriticObjective

    path = make_gpt2(tmp_path / "gpt2")
    objective = ActorCriticObjective(LearnerConfig(sl_weight=0.0, critic="value", clip_eps=None))
    eng = PolicyEngine(_settings(path, "value"))
    batch = _batch()
    history = [eng.train_step([batch], objective) for _ in range(10)]
    losses = [m.extra["critic/value_loss"] for m in history]
    # V starts at 0: loss = mean G^2 = (.36 + .81 + .81 + .36 + 1 + 1 + 1) / 7
    assert losses[0] == pytest.approx(5.34 / 7, rel=1e-5)
    assert losses[-1] < 0.5 * losses[0], losses
    m = history[-1].extra
    assert {"critic/value_mean", "critic/advantage_mean", "critic/grad_norm"} <= m.keys()
    assert eng.critic.steps == 10

    eng.save_checkpoint(tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "deepspeed" / "critic_rank0.pt").exists()
    saved = eng.critic.state_dict()
    after_save = eng.train_step([batch], objective)

    fresh = PolicyEngine(_settings(path, "value"))
    assert not _heads_equal(fresh.critic, eng.critic)
    fresh.load_checkpoint(tmp_path / "ckpt")
    assert fresh.step == 10 and fresh.critic.steps == 10
    assert all(torch.equal(saved["head"][k], v)
               for k, v in fresh.critic.head.state_dict().items())
    resumed = fresh.train_step([batch], objective)
    assert resumed.loss == pytest.approx(after_save.loss, abs=1e-6)
    assert resumed.extra == pytest.approx(after_save.extra, abs=1e-6)
    assert all(torch.allclose(x, y, atol=1e-6) for x, y in
               zip(fresh.critic.head.parameters(), eng.critic.head.parameters()))


@pytest.mark.parametrize("kind", ["outcome", "value"])
def test_encoder_decoder_critic_step(single_rank, tmp_path, kind):
    from learner.engine import PolicyEngine
    from learner.objectives import ActorCriticObjective

    path = make_t5(tmp_path / "t5")
    eng = PolicyEngine(_settings(path, kind))
    before = [p.detach().clone() for p in eng.critic.head.parameters()]
    m = eng.train_step([_batch(encoder_decoder=True)],
                       ActorCriticObjective(LearnerConfig(sl_weight=0.0, critic=kind,
                                                          importance_ratio_max=2.0,
                                                          clip_eps=None)))
    assert math.isfinite(m.loss) and m.extra["tokens"] == 7
    if kind == "outcome":  # zero-initialised output: uniform over the 4 outcomes
        assert m.extra["critic/outcome_loss"] == pytest.approx(math.log(4), rel=1e-5)
        assert m.extra["critic/outcome_prob"] == pytest.approx(0.25, rel=1e-5)
    else:
        assert m.extra["critic/value_loss"] == pytest.approx(5.34 / 7, rel=1e-5)
    assert any(not torch.equal(a, b) for a, b in zip(before, eng.critic.head.parameters()))


def test_engine_without_critic_keeps_the_plain_objectives(single_rank, tmp_path):
    from learner.engine import PolicyEngine
    from learner.objectives import ActorCriticObjective, LanguageModelObjective

    path = make_gpt2(tmp_path / "gpt2")
    eng = PolicyEngine(_settings(path, None))
    assert eng.critic is None
    m = eng.train_step([torch.randint(2, 50, (2, 8))], LanguageModelObjective())
    assert math.isfinite(m.loss) and not any(k.startswith("critic/") for k in m.extra)
    with pytest.raises(ValueError, match="learner.critic='value'"):
        eng.train_step([_batch()], ActorCriticObjective(LearnerConfig(critic="value")))
