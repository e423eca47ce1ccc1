"""Every command on tiny models of the real families (learner/tiny_model.py): a CodeT5-shaped
T5 with a RoBERTa-style byte-level BPE, a Llama (SentencePiece-style BPE, BOS) and a Qwen2
(byte-level BPE, no BOS), both decoder-only with rotary positions and grouped-query attention.

Per family: the sampler's log-probs are the learner's on the same tokens; the warm start and
the supervised term see exactly the prompt ids the sampler feeds the model, truncated prompts
included; `rltf sft` then greedy sampling reproduces the references and `rltf eval` scores
them 1.0; on a real (single-rank, gloo) DeepSpeed engine with a value critic, the published
weights reproduce the learner's bit for bit and a resumed run continues bit for bit;
`rltf sft --deepspeed` trains through that engine.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from actors.sampler import Sampler, SamplerSettings
from learner.batch import TrainBatch, collate
from learner.loss import label_mask, supervised_loss
from learner.objectives import policy_logprobs
from learner.sft import sft_pairs
from tiny_models import FAMILY_NAMES, family_problems

torch.set_num_threads(1)


def _long_problem():
    from core.records import Problem

    statement = "Read n and print twice n. " + "The input holds one number. " * 30
    return Problem(task_id="fam/long", prompt=statement, format="stdio",
                   tests=[{"input": "1\n", "output": "2\n"}],
                   solutions=["n = int(input())\nprint(n * 2)\n"])


def test_the_families_have_their_real_shapes(tiny_families):
    from learner.models import load_config, load_tokenizer

    t5 = load_config(tiny_families["codet5"])
    assert t5.is_encoder_decoder and t5.feed_forward_proj == "relu"
    assert t5.decoder_start_token_id == t5.pad_token_id == 0 and t5.eos_token_id == 2
    tok = load_tokenizer(tiny_families["codet5"])
    assert type(tok).__name__ == "RobertaTokenizer"
    assert [tok.convert_tokens_to_ids(t) for t in ("<pad>", "<s>", "</s>", "<unk>", "<mask>")
            ] == [0, 1, 2, 3, 4]
    for family, cls in (("llama", "LlamaForCausalLM"), ("qwen2", "Qwen2ForCausalLM")):
        cfg = load_config(tiny_families[family])
        assert cfg.architectures == [cls]
        assert cfg.num_key_value_heads < cfg.num_attention_heads  # grouped-query attention
        assert cfg.rope_parameters["rope_theta"] > 0  # rotary positions
    assert load_tokenizer(tiny_families["llama"]).bos_token == "<s>"
    assert load_tokenizer(tiny_families["qwen2"]).bos_token is None


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_sampler_logprobs_are_the_learners(tiny_families, family):
    """The learner's forward pass (collate + policy_logprobs) on a sample's tokens gives the
    log-probs the sampler recorded: a fresh sample's importance ratio is 1."""
    sampler = Sampler(tiny_families[family], seed=1)
    samples = sampler.generate(family_problems() + [_long_problem()],
                               SamplerSettings(n=2, max_new_tokens=12, max_prompt_tokens=40))
    assert any(s.prompt_truncated for s in samples)
    samples = [s for s in samples if s.token_ids]
    batch = collate([s.prompt_token_ids for s in samples], [s.token_ids for s in samples],
                    logprobs=[s.logprobs for s in samples], pad_id=sampler.pad_id,
                    encoder_decoder=sampler.encoder_decoder)
    with torch.no_grad():
        logp = policy_logprobs(sampler.model, batch)
    mask = label_mask(batch.labels)
    assert torch.allclose(logp * mask, batch.behaviour_logprobs * mask, atol=1e-5)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_a_bf16_sampler_generates_with_the_learners_bf16_weights(tiny_families, family):
    from learner.models import load_model

    learner = load_model(tiny_families[family], dtype="bfloat16")
    with torch.no_grad():
        for p in learner.parameters():
            p.add_(0.01)  # weights a learner has trained
    sampler = Sampler(tiny_families[family], dtype="bfloat16")
    assert all(p.dtype == torch.bfloat16 for p in sampler.model.parameters())
    sampler.load_weights(learner.state_dict(), version=1)
    state = learner.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in sampler.get_weights().items())
    [s] = sampler.generate(family_problems()[:1], SamplerSettings(n=0, max_new_tokens=6))
    assert s.token_ids and all(math.isfinite(x) for x in s.logprobs)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_supervised_term_sees_the_samplers_prompt(tiny_families, family, tmp_path):
    from core.config_reading import build_config
    from cluster.driver import batch_settings
    from learner.step_batches import StepBatches

    problems = family_problems() + [_long_problem()]
    sampler = Sampler(tiny_families[family], seed=0)
    enc_dec, limit = sampler.encoder_decoder, 40
    samples = sampler.generate(problems, SamplerSettings(n=0, max_new_tokens=8,
                                                         max_prompt_tokens=limit))
    pairs = sft_pairs(problems, sampler.tokenizer, enc_dec, limit)  # `rltf sft`
    batches = StepBatches(batch_settings(build_config({}), limit), sampler.tokenizer, enc_dec,
                          problems)
    for s, p, (prompt_ids, target) in zip(samples, problems, pairs):
        assert s.prompt_token_ids == prompt_ids
        [(driver_prompt, driver_target)] = batches.reference_pairs(p)
        assert (driver_prompt, driver_target) == (prompt_ids, target)
    long = samples[-1]
    assert long.prompt_truncated and len(long.prompt_token_ids) == limit
    first = long.prompt_token_ids[0]
    if family == "codet5":
        assert first == 1 and long.prompt_token_ids[-1] == 2  # <s> ... </s> kept
    elif family == "llama":
        assert first == sampler.tokenizer.bos_token_id
    # the supervised loss on a sample's own tokens is minus the mean of its log-probs
    s = next(x for x in samples if x.token_ids)
    b = collate([s.prompt_token_ids], [s.token_ids], pad_id=sampler.pad_id,
                encoder_decoder=enc_dec)
    with torch.no_grad():
        loss = supervised_loss(policy_logprobs(sampler.model, b), label_mask(b.labels))
    assert float(loss) == pytest.approx(-sum(s.logprobs) / len(s.logprobs), abs=1e-5)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_warm_start_then_sampling_and_eval(tiny_families, family, tmp_path):
    """`rltf sft` on three problems; greedy samples then are the references, token for token,
    and `rltf eval` (real sandboxes) scores pass@1 = 1."""
    from cluster.cli import main
    from core.records import write_jsonl

    problems = tmp_path / "p.jsonl"
    write_jsonl(problems, family_problems())
    out = tmp_path / "sft"
    assert main(["sft", "--model", tiny_families[family], "--problems", str(problems),
                 "--out", str(out), "--steps", "60", "--lr", "1e-2", "--batch-size", "3",
                 "--warmup", "5", "--device", "cpu"]) == 0
    info = json.loads((out / "rltf_sft.json").read_text())
    assert info["final_loss"] < 0.1 * info["first_loss"]
    sampler = Sampler(str(out))
    greedy = sampler.generate(family_problems(), SamplerSettings(n=0, max_new_tokens=40))
    assert [s.program for s in greedy] == [p.solutions[0] for p in family_problems()]
    assert all(s.finish_reason == "eos" for s in greedy)
    report = tmp_path / "eval.json"
    assert main(["eval", "--model", str(out), "--problems", str(problems),
                 "--max-new-tokens", "40", "--out", str(report)]) == 0
    assert json.loads(report.read_text())["overall"]["pass@1"] == 1.0


# -- the learner: DeepSpeed on one gloo rank -----------------------------------------------

ZERO = {"codet5": 2, "llama": 0, "qwen2": 3}  # the APPS preset's stage, none, the MBPP one's


def _train_batches(path: str):
    """Two micro-batches of RL samples (rewards made up) with supervised examples."""
    sampler = Sampler(path, seed=3)
    samples = [s for s in sampler.generate(family_problems(),
                                           SamplerSettings(n=2, max_new_tokens=10))
               if s.token_ids][:4]
    pairs = sft_pairs(family_problems(), sampler.tokenizer, sampler.encoder_decoder,
                      sampler.prompt_limit(SamplerSettings(max_new_tokens=10)))
    out = []
    for part, refs in ((samples[:2], pairs[:2]), (samples[2:4], pairs[1:3])):
        rl = collate([s.prompt_token_ids for s in part], [s.token_ids for s in part],
                     [[(-1) ** i * 0.5] * len(s.token_ids) for i, s in enumerate(part)],
                     [s.logprobs for s in part], pad_id=sampler.pad_id,
                     encoder_decoder=sampler.encoder_decoder)
        sl = collate([a for a, _ in refs], [b for _, b in refs], pad_id=sampler.pad_id,
                     encoder_decoder=sampler.encoder_decoder)
        out.append(TrainBatch(rl=rl, sl=sl))
    return out


@pytest.mark.integration
@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_learner_critic_published_weights_and_resume(single_rank, tiny_families, family,
                                                     tmp_path):
    from core.config import LearnerConfig
    from learner.engine import EngineSettings, PolicyEngine
    from learner.objectives import ActorCriticObjective

    path = tiny_families[family]
    learner = LearnerConfig(lr=1e-3, warmup_steps=0, micro_batch_size=2, zero_stage=ZERO[family],
                            precision="fp32", critic="value", critic_hidden=16, critic_lr=1e-2)
    settings = EngineSettings(model_path=path, learner=learner, grad_accum=2, critic=True)
    objective = ActorCriticObjective(learner.model_copy(update=dict(
        sl_weight=0.5, importance_ratio_max=2.0, clip_eps=None)))
    batches = _train_batches(path)
    eng = PolicyEngine(settings)
    first = [eng.train_step(batches, objective) for _ in range(2)]
    assert first[0].extra["critic/value_loss"] > 0 and "loss/sl" in first[0].extra
    eng.save_checkpoint(tmp_path / "ck")
    for _ in range(2):
        eng.train_step(batches, objective)
    state = eng.full_state_dict()

    # published weights: the sampler's model is then the learner's, bit for bit
    sampler = Sampler(path)
    before = sampler.get_weights()
    sampler.load_weights(state, version=4)
    got = sampler.get_weights()
    assert any(not torch.equal(before[k], got[k]) for k in got)
    assert all(torch.equal(got[k], state[k]) for k in got if k in state)
    b = batches[0].rl
    eng.engine.eval()
    with torch.no_grad():
        assert torch.equal(policy_logprobs(eng.handle, b), policy_logprobs(sampler.model, b))

    # resume: a fresh engine from the checkpoint takes the same two steps
    fresh = PolicyEngine(settings)
    fresh.load_checkpoint(tmp_path / "ck")
    assert fresh.step == 2 and fresh.critic.steps == 2
    for _ in range(2):
        fresh.train_step(batches, objective)
    again = fresh.full_state_dict()
    assert all(torch.equal(again[k], state[k]) for k in state)
    assert all(torch.equal(x, y) for x, y in zip(fresh.critic.head.parameters(),
                                                 eng.critic.head.parameters()))


@pytest.mark.integration
def test_sft_through_the_deepspeed_engine(single_rank, tiny_families, tmp_path):
    from cluster.cli import main
    from core.records import write_jsonl
    from learner.models import load_model

    problems = tmp_path / "p.jsonl"
    write_jsonl(problems, family_problems())
    out = tmp_path / "sft"
    assert main(["sft", "--model", tiny_families["qwen2"], "--problems", str(problems),
                 "--out", str(out), "--steps", "30", "--lr", "1e-2", "--batch-size", "4",
                 "--warmup", "3", "--deepspeed", "--zero-stage", "3",
                 "--micro-batch-size", "2"]) == 0
    info = json.loads((out / "rltf_sft.json").read_text())
    assert info["settings"]["deepspeed"] and info["final_loss"] < 0.5 * info["first_loss"]
    tuned, base = load_model(str(out)), load_model(tiny_families["qwen2"])
    assert any(not torch.equal(a, b) for a, b in zip(tuned.state_dict().values(),
                                                     base.state_dict().values()))
