"""Where models come from, and the pure rules every phase shares (learner/models.py): hub ids
through the local Hugging Face cache only (nothing here has a network), the offline error, the
prompt limit and cut, BOS, and the choice of device and dtype."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from learner.models import (ModelNotAvailable, adds_bos, cut_middle, encode_prompts,
                            learner_precision, load_model, load_tokenizer, pick_device,
                            prompt_limit, resolve_model, sampler_dtype)

REV = "0123456789abcdef0123456789abcdef01234567"


def _cache_with(cache: Path, repo_id: str, folder: str) -> Path:
    """`folder` placed in a Hugging Face hub cache as `repo_id`, revision main:
    models--org--name/{refs/main, snapshots/<rev>/...}, as `hf download` leaves it."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    shutil.copytree(folder, repo / "snapshots" / REV)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(REV)
    return repo / "snapshots" / REV


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """An empty hub cache of this test's own, offline."""
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def test_a_folder_is_used_as_is(tiny_families):
    assert resolve_model(tiny_families["qwen2"]) == tiny_families["qwen2"]


def test_a_missing_folder_is_named(tmp_path):
    with pytest.raises(ModelNotAvailable, match="model folder .*/nothing/here does not exist"):
        resolve_model(str(tmp_path / "nothing" / "here"))


def test_an_uncached_hub_id_offline_says_how_to_get_it(offline):
    with pytest.raises(ModelNotAvailable) as err:
        load_model("rltf-test/not-cached")
    msg = str(err.value)
    assert "'rltf-test/not-cached' is neither a folder nor in the Hugging Face cache" in msg
    assert str(offline) in msg and "HF_HUB_OFFLINE" in msg
    assert "hf download rltf-test/not-cached" in msg
    assert "huggingface-cli download rltf-test/not-cached" in msg
    with pytest.raises(ModelNotAvailable, match="neither a folder nor"):
        load_tokenizer("rltf-test/not-cached")


def test_an_uncached_hub_id_without_a_reachable_hub_fails_at_once(monkeypatch, tmp_path):
    # not offline, but the hub's host does not resolve (.invalid never does): the resolver
    # says so instead of letting huggingface_hub retry for half a minute
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.invalid")
    with pytest.raises(ModelNotAvailable, match="(?s)hub.invalid cannot be reached.*"
                       "hf download rltf-test/not-cached"):
        resolve_model("rltf-test/not-cached")


def test_a_cached_hub_id_loads_offline(offline, tiny_families):
    snapshot = _cache_with(offline, "rltf-test/tiny-qwen2", tiny_families["qwen2"])
    assert Path(resolve_model("rltf-test/tiny-qwen2")) == snapshot
    model = load_model("rltf-test/tiny-qwen2")
    ref = load_model(tiny_families["qwen2"])
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                 ref.state_dict().values()))
    tok = load_tokenizer("rltf-test/tiny-qwen2")
    assert tok.get_vocab() == load_tokenizer(tiny_families["qwen2"]).get_vocab()


def test_commands_take_a_cached_hub_id(offline, tmp_path, tiny_families, capsys):
    """`rltf eval` and `rltf sft` by hub id from the cache; `rltf train` with an uncached id
    stops before any actor starts, with the advice."""
    from cluster.cli import main
    from core.records import write_jsonl
    from tiny_models import family_problems

    _cache_with(offline, "rltf-test/tiny-llama", tiny_families["llama"])
    problems = tmp_path / "p.jsonl"
    write_jsonl(problems, family_problems())
    assert main(["eval", "--model", "rltf-test/tiny-llama", "--problems", str(problems),
                 "--max-new-tokens", "8", "--out", str(tmp_path / "r.json")]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["model"] == "rltf-test/tiny-llama"
    assert main(["sft", "--model", "rltf-test/tiny-llama", "--problems", str(problems),
                 "--out", str(tmp_path / "sft"), "--steps", "2", "--batch-size", "2"]) == 0
    assert (tmp_path / "sft" / "model.safetensors").exists()
    capsys.readouterr()
    assert main(["train", "--run-dir", str(tmp_path / "run"), "model.path=rltf-test/absent",
                 "data.synth_n=20"]) == 2
    err = capsys.readouterr().err
    assert "'rltf-test/absent' is neither a folder nor in the Hugging Face cache" in err
    assert "hf download rltf-test/absent" in err


# -- prompts -----------------------------------------------------------------------------------

def test_cut_middle_keeps_both_ends():
    ids = list(range(10))
    assert cut_middle(ids, None) == ids and cut_middle(ids, 10) == ids
    assert cut_middle(ids, 4) == [0, 1, 8, 9]
    assert cut_middle(ids, 5) == [0, 1, 2, 8, 9]  # ceil(5/2) from the start, floor from the end
    assert cut_middle(ids, 1) == [0]


def test_warm_start_examples_over_max_len_lose_the_prompts_middle():
    """`rltf sft`'s max_len cuts a decoder-only prompt as the sampler does: BOS and the
    statement's start stay; the target is kept whole."""
    from learner.batch import collate

    b = collate([[1, 20, 21, 22, 23, 24]], [[7, 8]], max_len=6)
    assert b.input_ids.tolist() == [[1, 20, 23, 24, 7, 8]]
    assert b.labels.tolist()[0][4:] == [7, 8]
    b = collate([[1, 20]], [[7, 8, 9]], max_len=3)  # no room left for the prompt
    assert b.input_ids.tolist() == [[7, 8, 9]]


def test_prompt_limit_defaults_and_checks():
    # decoder-only: what the context leaves after the completion
    assert prompt_limit(None, encoder_decoder=False, context=512, max_new_tokens=160) == 352
    # encoder-decoders: the tokenizer's limit, else the config's, else 512
    assert prompt_limit(None, encoder_decoder=True, context=None, max_new_tokens=512,
                        tokenizer_max=512) == 512
    assert prompt_limit(None, encoder_decoder=True, context=None, max_new_tokens=512,
                        tokenizer_max=int(1e30)) == 512
    assert prompt_limit(600, encoder_decoder=True, context=None, max_new_tokens=512) == 600
    with pytest.raises(ValueError, match="exceed the model's context"):
        prompt_limit(400, encoder_decoder=False, context=512, max_new_tokens=160)
    with pytest.raises(ValueError, match="no room for a prompt"):
        prompt_limit(None, encoder_decoder=False, context=100, max_new_tokens=100)


def test_special_tokens_of_prompts(tiny_families):
    text = "# Return the sum of a and b.\n"
    t5, llama, qwen = (load_tokenizer(tiny_families[f]) for f in ("codet5", "llama", "qwen2"))
    [ids], _ = encode_prompts(t5, [text], encoder_decoder=True, limit=None)
    assert ids[0] == t5.bos_token_id == 1 and ids[-1] == t5.eos_token_id == 2  # <s> ... </s>
    assert adds_bos(llama) and not adds_bos(qwen)
    [ids], _ = encode_prompts(llama, [text], encoder_decoder=False, limit=None)
    assert ids[0] == llama.bos_token_id and llama.eos_token_id not in ids
    [ids], _ = encode_prompts(qwen, [text], encoder_decoder=False, limit=None)
    assert ids == qwen(text, add_special_tokens=False)["input_ids"]
    # cut to 6: BOS and the last tokens stay
    [full], _ = encode_prompts(llama, [text * 3], encoder_decoder=False, limit=None)
    [cut], [was_cut] = encode_prompts(llama, [text * 3], encoder_decoder=False, limit=6)
    assert was_cut and cut == full[:3] + full[-3:]


# -- devices and dtypes ------------------------------------------------------------------------

def test_device_choice():
    assert pick_device("auto", cuda_available=True) == "cuda"
    assert pick_device("auto", cuda_available=False) == "cpu"
    assert pick_device("cuda:1", cuda_available=True) == "cuda:1"
    with pytest.raises(ValueError, match="no GPU is visible"):
        pick_device("cuda", cuda_available=False)
    with pytest.raises(ValueError, match="use auto, cpu or cuda"):
        pick_device("tpu", cuda_available=False)


def test_samplers_take_the_learners_dtype():
    assert learner_precision("auto", on_gpu=True) == "bf16"
    assert learner_precision("auto", on_gpu=False) == "fp32"
    assert learner_precision("auto", True, {"fp16": {"enabled": True}}) == "fp16"
    assert learner_precision("bf16", True, {"bf16": {"enabled": False}}) == "fp32"
    assert sampler_dtype("auto", "bf16") == "bfloat16"
    assert sampler_dtype("auto", "fp32") == "float32"
    assert sampler_dtype("float32", "bf16") == "float32"
    with pytest.raises(ValueError, match="sampler dtype"):
        sampler_dtype("int8", "fp32")


def test_sampler_dtype_from_the_config():
    from core.config_reading import build_config
    from cluster.topology import sampler_dtype_of

    gpu = ["learner.gpus_per_rank=1", "sampler.gpus_per_actor=1"]
    assert sampler_dtype_of(build_config({}, gpu)) == "bfloat16"
    assert sampler_dtype_of(build_config({}, [])) == "float32"
    assert sampler_dtype_of(build_config({}, gpu + ["learner.precision=fp32"])) == "float32"
    assert sampler_dtype_of(build_config({}, gpu + ["sampler.dtype=float32"])) == "float32"
