"""The KL penalty's reference model under ZeRO-3: two learner ranks (two processes, gloo on
CPU, real DeepSpeed) build it with `learner.reference.reference_model`. Each rank holds a
1/2 shard of every parameter larger than DeepSpeed's persistence threshold (never a full
copy), its log-probs equal the unsharded model's, and one learner step with
sl_mode=alternate and kl_coef > 0 reports the k3 KL of the unsharded policy and reference
on that rank's RL micro-batch.

The policy and the reference are two different random GPT-2s (so the KL is not zero) with
no dropout (so the training-mode forward pass is deterministic), wide enough (n_embd 320)
that their large matrices exceed the persistence threshold (1e5 elements) and get
partitioned.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORLD = 2


def _gpt2(path: Path, seed: int) -> str:
    from transformers import GPT2Config, GPT2LMHeadModel

    from tiny_models import make_tokenizer

    tok = make_tokenizer(path)
    torch.manual_seed(seed)
    cfg = GPT2Config(n_layer=1, n_embd=320, n_head=4, vocab_size=len(tok), n_positions=64,
                     bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id,
                     pad_token_id=tok.pad_token_id, resid_pdrop=0, embd_pdrop=0, attn_pdrop=0)
    GPT2LMHeadModel(cfg).save_pretrained(str(path))
    return str(path)


def _batches(rank: int):
    """(a probe batch every rank scores, this rank's supervised and RL micro-batches)."""
    from learner.batch import collate

    g = torch.Generator().manual_seed(100 + rank)

    def ids(n):
        return torch.randint(3, 300, (n,), generator=g).tolist()

    probe = collate([[5, 6, 7], [8, 9]], [[10, 11, 12, 13], [14, 15]], pad_id=1)
    sl = collate([ids(4), ids(3)], [ids(5), ids(6)], pad_id=1)
    rl = collate([ids(3), ids(5)], [ids(6), ids(4)], rewards=[[0.5] * 6, [-0.3] * 4],
                 logprobs=[[-5.0] * 6, [-5.0] * 4], pad_id=1)
    return probe, sl, rl


def _worker(rank: str, policy: str, ref: str, out: str) -> None:
    from learner.batch import TrainBatch
    from core.config import LearnerConfig
    from learner.engine import EngineSettings, PolicyEngine
    from learner.objectives import RLTFObjective, _reference, policy_logprobs

    torch.set_num_threads(1)
    rank = int(rank)
    learner = LearnerConfig(lr=1e-3, warmup_steps=0, micro_batch_size=2, zero_stage=3)
    eng = PolicyEngine(EngineSettings(model_path=policy, learner=learner, grad_accum=2, seed=0),
                       rank, WORLD)
    model = _reference(ref, eng.handle)  # as the objective builds it
    probe, sl, rl = _batches(rank)
    with torch.no_grad():
        probe_logp = policy_logprobs(model, probe)
    shards = {n: (p.ds_numel, p.ds_tensor.numel(), p.numel(), bool(p.ds_persist))
              for n, p in model.module.named_parameters()}
    objective = RLTFObjective(LearnerConfig(sl_weight=0.5, sl_mode="alternate", kl_coef=0.1,
                                            clip_eps=None), reference_path=ref)
    metrics = eng.train_step([TrainBatch(rl=None, sl=sl), TrainBatch(rl=rl)], objective)
    torch.save({"probe": probe_logp, "shards": shards, "extra": metrics.extra,
                "threshold": eng.engine.zero_param_persistence_threshold(),
                "same": _reference(ref, eng.handle) is model},
               Path(out) / f"rank{rank}.pt")
    # both ranks done with the group, then shut it down before exit: a process leaving with
    # gloo's threads still running was once aborted ("terminate called without an active
    # exception") after writing its results
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


def test_reference_is_partitioned_and_scores_like_the_unsharded_model(tmp_path):
    from cluster.weights import free_port
    from learner.engine import load_model
    from learner.loss import kl_penalty, label_mask
    from learner.objectives import policy_logprobs

    policy, ref = _gpt2(tmp_path / "policy", 0), _gpt2(tmp_path / "ref", 1)
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()),
               WORLD_SIZE=str(WORLD), LOCAL_RANK="0", OMP_NUM_THREADS="1",
               CUDA_VISIBLE_DEVICES="", PYTHONPATH=os.pathsep.join([str(ROOT), str(HERE)]))
    procs = [subprocess.Popen([sys.executable, __file__, str(r), policy, ref, str(tmp_path)],
                              cwd=ROOT, env=dict(env, RANK=str(r)), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for r in range(WORLD)]
    for p in procs:
        text, _ = p.communicate(timeout=400)
        assert p.returncode == 0, text[-4000:]
    got = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]
    full_ref, full_policy = load_model(ref).eval(), load_model(policy).eval()
    total = sum(p.numel() for p in full_ref.parameters())
    for rank, res in enumerate(got):
        assert res["same"]  # built once per process
        shards = res["shards"]
        big = {n: s for n, s in shards.items() if s[0] > res["threshold"]}
        assert big, "no parameter is large enough to be partitioned"
        for name, (numel, shard, held, persist) in big.items():
            # a 1/2 shard, and nothing else held between forward passes
            assert not persist and shard == math.ceil(numel / WORLD) and held == 0, name
        held = sum(s[1] if not s[3] else s[0] for s in shards.values())
        assert sum(s[0] for s in shards.values()) == total
        assert held < 0.6 * total, (held, total)
        # the sharded reference scores the probe batch as the unsharded model does
        probe, _, rl = _batches(rank)
        with torch.no_grad():
            want = policy_logprobs(full_ref, probe)
            assert torch.allclose(res["probe"], want, atol=1e-5)
            # the learner step's KL: k3 of the (not yet updated) policy against the reference
            mask = label_mask(rl.labels)
            k3 = kl_penalty(policy_logprobs(full_policy, rl), policy_logprobs(full_ref, rl))
            kl = float((k3 * mask).sum() / mask.sum())
        assert kl > 0.01
        assert res["extra"]["loss/kl"] == pytest.approx(kl, rel=1e-4)
        assert "loss/sl" in res["extra"] and "loss/pg" in res["extra"]


if __name__ == "__main__":
    _worker(*sys.argv[1:])
