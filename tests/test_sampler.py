"""The sampler on tiny local models: offsets, log-probs, weights, stops, versions."""

from __future__ import annotations

import pickle

import pytest
import torch

from actors.sampler import Sampler, SamplerSettings
from actors.token_text import byte_level_table, cut_at_stop, token_texts
from core.records import Problem
from tiny_models import (make_gpt2, make_memorizing_gpt2, make_sentencepiece_tokenizer,
                         make_t5)

torch.set_num_threads(1)

PROBLEMS = [
    Problem(task_id="p0", prompt="Return the sum.", format="call", fn_name="add",
            tests=[{"input": [1, 2], "output": 3}]),
    Problem(task_id="p1", prompt="Read n and print twice n. A longer statement to pad.",
            format="stdio", tests=[{"input": "1\n", "output": "2\n"}]),
    Problem(task_id="p2", prompt="def square(x):\n", format="assert", entry_point="square",
            starter_code="def square(x):\n", tests=["assert square(2) == 4"]),
]


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    return make_gpt2(tmp_path_factory.mktemp("gpt2"))


@pytest.fixture(scope="module")
def t5(tmp_path_factory):
    return make_t5(tmp_path_factory.mktemp("t5"))


def test_token_texts_reproduce_text_with_multibyte_characters(gpt2):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gpt2)
    text = "caf\u00e9 \u2192 \u2713\nx = '\u00fc'\n\u4e2d\u6587\n"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    table = byte_level_table(tok)
    assert table is not None
    texts = token_texts(tok, table, ids)
    assert "".join(texts) == text == tok.decode(ids)
    assert len(texts) == len(ids)
    # a character split over byte tokens: its first tokens add nothing, the last carries it
    assert any(t == "" for t in texts)


def test_token_texts_without_a_byte_level_decoder(tmp_path):
    # SentencePiece-style tokenizers decode through a window of ids; a leading space that
    # the decoder would strip at the start of a text is kept thanks to the prompt context.
    tok = make_sentencepiece_tokenizer(tmp_path / "sp")
    assert byte_level_table(tok) is None
    prompt = tok("def f(x):", add_special_tokens=False)["input_ids"]
    ids = tok(" return x + 1", add_special_tokens=False)["input_ids"]
    texts = token_texts(tok, None, ids, context=prompt[-1:])
    assert len(texts) == len(ids)
    assert "".join(texts) == tok.decode(prompt + ids)[len(tok.decode(prompt)):]


def test_cut_at_stop_rule():
    texts = ["    return", " x", "\n", "def", " g"]
    # "\ndef" begins exactly where token 2 begins: the completion ends before token 2
    assert cut_at_stop(texts, ["\ndef"]) == (2, True)
    assert cut_at_stop(texts, ["\nclass"]) == (5, False)
    # the stop begins inside ")\n": that token is kept, so ")" is not lost
    assert cut_at_stop(["f(x", ")\n", "def"], ["\ndef"]) == (2, True)
    # a token that holds a whole stop string is dropped with everything after it
    assert cut_at_stop(["a", "b\ndef c", "d"], ["\ndef"]) == (1, True)
    # the earliest of several stops wins
    assert cut_at_stop(["x", "\n#", "\ndef"], ["\ndef", "\n#"]) == (1, True)
    # empty texts (parts of a multi-byte character) before the cut are not kept alone
    assert cut_at_stop(["a", "", "\ndef"], ["\ndef"]) == (1, True)


def test_stop_string_ends_generation_after_a_prefix(tmp_path):
    prompt = "def double(x):\n"
    body = "    return x * 2\n\ndef other():\n    pass\n"
    path = make_memorizing_gpt2(tmp_path / "mem", prompt, body)
    problem = Problem(task_id="d", prompt=prompt, format="assert", entry_point="double",
                      starter_code=prompt, tests=["assert double(2) == 4"])
    sampler = Sampler(path)
    [s] = sampler.generate([problem], SamplerSettings(n=0, include_greedy=True,
                                                      max_new_tokens=40))
    assert s.finish_reason == "stop"
    assert s.completion.startswith("    return x * 2")
    assert "def other" not in s.completion
    assert s.program == prompt + s.completion
    # with no stop strings the model writes the whole memorised text and then EOS
    [t] = sampler.generate([problem], SamplerSettings(n=0, include_greedy=True,
                                                      max_new_tokens=40, stop=()))
    assert t.completion == body and t.finish_reason == "eos"
    # the EOS that ended it is recorded beside the completion's tokens, with log pi(EOS)
    # after them (the learner trains on it); a generation cut by a stop string has none
    assert s.eos_token_id is None and s.eos_logprob is None
    assert t.eos_token_id in sampler.eos_ids
    [lp_eos] = _forward_logprobs(sampler.model, t.prompt_token_ids + t.token_ids,
                                 [t.eos_token_id])
    assert t.eos_logprob == pytest.approx(lp_eos, abs=1e-4)


def test_settings_are_validated():
    with pytest.raises(ValueError, match="temperature"):
        SamplerSettings(temperature=0)
    with pytest.raises(ValueError, match="top_p"):
        SamplerSettings(top_p=1.5)
    with pytest.raises(ValueError, match="at least one"):
        SamplerSettings(n=0, include_greedy=False)


def _forward_logprobs(model, prompt_ids, ids, encoder_decoder=False):
    if not ids:
        return []
    with torch.no_grad():
        if encoder_decoder:
            out = model(input_ids=torch.tensor([prompt_ids]),
                        labels=torch.tensor([ids]))
            lp = torch.log_softmax(out.logits[0].float(), -1)
            return [lp[t, ids[t]].item() for t in range(len(ids))]
        seq = torch.tensor([prompt_ids + ids])
        lp = torch.log_softmax(model(input_ids=seq).logits[0].float(), -1)
        n = len(prompt_ids)
        return [lp[n + t - 1, ids[t]].item() for t in range(len(ids))]


def test_samples_offsets_logprobs_versions_and_greedy(gpt2):
    sampler = Sampler(gpt2, seed=3, policy_version=7)
    samples = sampler.generate(PROBLEMS, SamplerSettings(n=3, include_greedy=True,
                                                         max_new_tokens=24, batch_size=6))
    assert len(samples) == 3 * 4
    assert sum(s.is_greedy for s in samples) == 3
    assert len({s.sample_id for s in samples}) == len(samples)
    for s in samples:
        assert s.policy_version == 7
        assert s.program == s.program_prefix + s.completion
        assert "".join(s.completion[a:b] for a, b in s.token_offsets) == s.completion
        assert len(s.token_ids) == len(s.logprobs) == len(s.token_offsets)
        ref = _forward_logprobs(sampler.model, s.prompt_token_ids, s.token_ids)
        assert s.logprobs == pytest.approx(ref, abs=1e-4), s.sample_id
    p2 = [s for s in samples if s.task_id == "p2"]
    assert all(s.program_prefix == "def square(x):\n" for s in p2)


def test_the_samples_of_one_task_in_one_call_form_a_group(gpt2):
    sampler = Sampler(gpt2, seed=2, policy_version=4)
    s = SamplerSettings(n=2, include_greedy=True, max_new_tokens=4)
    first, second = sampler.generate(PROBLEMS[:2], s), sampler.generate(PROBLEMS[:2], s)
    groups: dict[str, list] = {}
    for x in first:
        groups.setdefault(x.group_id, []).append(x)
    assert len(groups) == 2  # one a task
    for members in groups.values():
        assert len(members) == 3 and sum(m.is_greedy for m in members) == 1
        assert len({m.task_id for m in members}) == 1
        assert len({m.sample_id for m in members}) == 3
    assert not {x.group_id for x in first} & {x.group_id for x in second}  # a new call
    # Samples cross actor boundaries pickled (as Ray sends them): the group goes with them.
    assert [x.group_id for x in pickle.loads(pickle.dumps(first))] == [x.group_id for x in first]


def test_seeded_generation_is_deterministic(gpt2):
    a = Sampler(gpt2, seed=5).generate(PROBLEMS[:2], SamplerSettings(n=2, max_new_tokens=16))
    b = Sampler(gpt2, seed=5).generate(PROBLEMS[:2], SamplerSettings(n=2, max_new_tokens=16))
    assert [s.token_ids for s in a] == [s.token_ids for s in b]


def test_stop_strings_and_finish_reasons(gpt2):
    sampler = Sampler(gpt2, seed=1)
    samples = sampler.generate(PROBLEMS, SamplerSettings(n=4, include_greedy=False,
                                                         max_new_tokens=40, stop=("e",),
                                                         stop_whole_program=("e",)))
    for s in samples:
        assert "e" not in s.completion
        assert s.finish_reason in ("stop", "eos", "length")
    assert any(s.finish_reason == "stop" for s in samples)


def test_load_weights_gives_bitwise_identical_logits(gpt2, tmp_path):
    src = Sampler(make_gpt2(tmp_path / "other", seed=11))
    dst = Sampler(gpt2)
    x = torch.tensor([[1, 5, 9, 3]])
    with torch.no_grad():
        assert not torch.equal(src.model(input_ids=x).logits, dst.model(input_ids=x).logits)
    dst.load_weights(src.get_weights(), version=4)
    with torch.no_grad():
        assert torch.equal(src.model(input_ids=x).logits, dst.model(input_ids=x).logits)
    assert dst.policy_version == 4
    bad = src.get_weights()
    bad.pop("transformer.h.0.ln_1.weight")
    with pytest.raises(ValueError, match="1 missing"):
        dst.load_weights(bad, version=5)
    assert dst.policy_version == 4  # nothing was applied
    # a tied weight may come under one of its names only (lm_head.weight is wte's)
    tied = src.get_weights()
    tied.pop("lm_head.weight", None)
    dst.load_weights(tied, version=6)
    assert dst.policy_version == 6


def test_encoder_decoder_sampler(t5):
    sampler = Sampler(t5, seed=2)
    assert sampler.encoder_decoder
    samples = sampler.generate(PROBLEMS[:2], SamplerSettings(n=2, max_new_tokens=12))
    assert len(samples) == 2 * 3
    for s in samples:
        assert "".join(s.completion[a:b] for a, b in s.token_offsets) == s.completion
        ref = _forward_logprobs(sampler.model, s.prompt_token_ids, s.token_ids, True)
        assert s.logprobs == pytest.approx(ref, abs=1e-4)


def test_shared_prompt_prefill_generates_the_same_tokens(gpt2):
    # Each distinct prompt is prefilled once and its KV cache copied to its rows; the rows
    # must come out as when every row prefills its own copy: left-padded prompts of three
    # lengths, several rows each, batches (of 5) that split a prompt's rows.
    sampler = Sampler(gpt2, seed=9)
    settings = SamplerSettings(n=3, include_greedy=True, temperature=0.7, max_new_tokens=20,
                               batch_size=5, stop=(), stop_whole_program=())
    embedded = []  # token positions the model embeds: prefill + decoding
    hook = sampler.model.get_input_embeddings().register_forward_hook(
        lambda mod, args, out: embedded.append(args[0].numel()))
    runs = {}
    for share in (False, True):
        sampler._share_prompts, sampler._calls, embedded[:] = share, 0, []
        runs[share] = (sampler.generate(PROBLEMS, settings), sum(embedded))
    hook.remove()
    (plain, plain_work), (shared, shared_work) = runs[False], runs[True]
    assert len({len(s.prompt_token_ids) for s in plain}) == 3
    assert shared_work < plain_work  # the prompts really were prefilled fewer times
    assert [s.is_greedy for s in shared] == [s.is_greedy for s in plain]
    for a, b in zip(plain, shared):
        assert a.token_ids == b.token_ids, a.sample_id
        assert b.logprobs == pytest.approx(a.logprobs, abs=1e-5)
        assert (a.finish_reason, a.eos_token_id) == (b.finish_reason, b.eos_token_id)
