"""The DeepSpeed learner group on a real local Ray instance (gloo, CPU)."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    ray.init(_node_ip_address="127.0.0.1", num_cpus=4, include_dashboard=False,
             log_to_driver=False, namespace="rltf-test-learner")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "gpt2"
    cfg = GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=64, n_positions=32,
                     bos_token_id=0, eos_token_id=0, resid_pdrop=0, embd_pdrop=0, attn_pdrop=0)
    GPT2LMHeadModel(cfg).save_pretrained(path)
    return str(path)


def _batches(world: int, steps: int):
    g = torch.Generator().manual_seed(1)
    data = torch.randint(1, 64, (4, 16), generator=g)  # a small set to memorise
    return [[[data[r * 2:(r + 1) * 2]] for r in range(world)] for _ in range(steps)]


@pytest.mark.parametrize("stage", [2, 3])
def test_two_ranks_train_and_gather_full_weights(ray_local, tiny_model, stage):
    import ray
    from transformers import AutoModelForCausalLM

    from cluster.learner_group import LearnerGroup
    from core.config import LearnerConfig
    from learner.engine import EngineSettings
    from learner.objectives import LanguageModelObjective

    settings = EngineSettings(model_path=tiny_model, learner=LearnerConfig(
        lr=3e-3, warmup_steps=0, zero_stage=stage, micro_batch_size=2), grad_accum=1)
    group = LearnerGroup(settings, world_size=2, name_prefix=f"rltf-learner-z{stage}")
    try:
        initial = ray.get(group.full_state_ref()[0])
        reference = AutoModelForCausalLM.from_pretrained(tiny_model).state_dict()
        assert initial.keys() == reference.keys()
        assert all(torch.equal(initial[k], reference[k]) for k in reference)
        losses = []
        for shards in _batches(2, 12):
            metrics = group.train_step(shards, LanguageModelObjective())
            assert len(metrics) == 2
            losses.append(sum(m.loss for m in metrics) / 2)
        assert losses[-1] < losses[0] - 0.5, losses
        trained = ray.get(group.full_state_ref()[0])
        model = AutoModelForCausalLM.from_pretrained(tiny_model)
        model.load_state_dict(trained)
        data = torch.cat([s[0] for s in _batches(2, 1)[0]])
        with torch.no_grad():
            loss = model(input_ids=data, labels=data).loss.item()
        # The gathered weights are the trained ones: their loss is the trained loss.
        assert loss < losses[0] - 0.5
    finally:
        group.shutdown()
