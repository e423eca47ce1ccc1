"""The DeepSpeed learner group on a real local Ray instance (gloo, CPU)."""

from __future__ import annotations

import os

import pytest
import torch

from cluster.faults import PAUSE_ENV

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pause_dir(tmp_path_factory):
    """The fault hook's folder (`cluster/faults.py`), in the environment before Ray starts."""
    folder = tmp_path_factory.mktemp("pause")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(PAUSE_ENV, str(folder))
        yield folder


@pytest.fixture(scope="module")
def ray_local(pause_dir):
    ray = pytest.importorskip("ray")
    ray.init(_node_ip_address="127.0.0.1", num_cpus=4, include_dashboard=False,
             log_to_driver=False, namespace="rltf-test-learner")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from tiny_models import make_tokenizer
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "gpt2"
    cfg = GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=64, n_positions=32,
                     bos_token_id=0, eos_token_id=0, resid_pdrop=0, embd_pdrop=0, attn_pdrop=0)
    GPT2LMHeadModel(cfg).save_pretrained(path)
    make_tokenizer(path)  # the ranks collate their shares with it (pad id 1, under 64)
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


def _until_lost(ref, timeout_s: float = 60) -> None:
    """Wait until the object store has dropped an object whose owner died (a copy on this
    node can still be read for a moment after its owner's death)."""
    import time

    import ray
    from ray.exceptions import OwnerDiedError

    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            ray.get(ref, timeout=timeout_s)
        except OwnerDiedError:
            return
        time.sleep(0.1)
    raise AssertionError(f"{ref} is still readable {timeout_s} s after its owner died")


def test_a_share_lost_before_every_rank_fetched_it_steps_no_rank(ray_local, tiny_model,
                                                                   pause_dir):
    """The buffer's process dies after handing out a batch's shares, when one rank holds its
    share and the other has not fetched it yet: no rank steps (none waits alone in the
    all-reduce, the weights stay the same on both), and the next batch trains both."""
    import ray

    from actors.replay_buffer import Experience
    from cluster.faults import wait_paused
    from cluster.learner_group import LearnerGroup, ShareStep
    from cluster.topology import RESTARTABLE, BufferActor
    from core.config import BufferConfig, LearnerConfig
    from learner.engine import EngineSettings
    from learner.objectives import RLTFObjective
    from learner.step_batches import BatchSettings

    def exps(first: int) -> list:
        return [Experience(task_id="t", sample_id=f"s{i}", prompt_ids=[5, 6, 7],
                           completion_ids=[8 + i, 9], token_rewards=[1.0, -0.5],
                           behaviour_logprobs=[-2.0, -2.0], outcome="pass", reward=1.0,
                           policy_version=0) for i in range(first, first + 4)]

    lc = LearnerConfig(lr=3e-3, warmup_steps=0, zero_stage=2, batch_size=4, ranks=2,
                       micro_batch_size=2, sl_weight=0.0, kl_coef=0.0)
    group = LearnerGroup(EngineSettings(model_path=tiny_model, learner=lc, grad_accum=1),
                         world_size=2, name_prefix="rltf-learner-shares")
    buffer = ray.remote(BufferActor).options(**RESTARTABLE).remote(BufferConfig(), 0)
    objective = RLTFObjective(learner=lc)
    try:
        ray.get([a.setup_batches.remote(BatchSettings(lc), [], 0) for a in group.actors])

        def own_weights(rank) -> torch.Tensor:  # run on a rank (ZeRO-2: whole on each)
            return torch.cat([p.detach().flatten() for p in rank.engine.model.parameters()])

        def weights() -> list:
            return ray.get([a.__ray_call__.remote(own_weights) for a in group.actors])

        def steps() -> list:
            return ray.get([a.step_count.remote() for a in group.actors])

        start = weights()
        ray.get(buffer.add.remote(exps(0)))
        shares = ray.get(buffer.draw_shares.remote(4, 2))
        (pause_dir / "learner-fetch").touch()  # the first rank to fetch waits there
        step = ShareStep(group.actors, shares, objective)
        paused = wait_paused(pause_dir, "learner-fetch", 120)
        assert paused is not None
        held, _ = ray.wait(step.refs, num_returns=1, timeout=120)
        assert ray.get(held) == [2]  # the other rank holds its share
        ray.kill(buffer, no_restart=False)  # Ray restarts it, empty
        _until_lost(shares[0])
        os.remove(pause_dir / f"learner-fetch.{paused}")
        assert step.result() is None and sorted(step.sizes) == [0, 2]
        assert steps() == [0, 0]
        after = weights()
        assert all(torch.equal(w, start[0]) for w in start + after)

        ray.get(buffer.add.remote(exps(4)))
        metrics = ShareStep(group.actors, ray.get(buffer.draw_shares.remote(4, 2)),
                            objective).result()
        assert len(metrics) == 2 and steps() == [1, 1]
        trained = weights()
        assert torch.equal(trained[0], trained[1]) and not torch.equal(trained[0], start[0])
    finally:
        group.shutdown()
        ray.kill(buffer, no_restart=True)
