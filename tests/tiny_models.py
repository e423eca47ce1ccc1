"""Tiny models and tokenizers built locally for tests (nothing is downloaded)."""

from __future__ import annotations

from pathlib import Path

# Overrides of a short embedded-default run for the tests that train end to end: a small
# suite, a short warm start, and a small evaluation (2 samples of 8 problems a split) that
# still goes through sampled and greedy evaluation.
SMALL_RUN = ["model.warm_start_steps=20", "data.synth_n=120", "data.max_heldout=8",
             "train.eval_samples=2"]

CORPUS = [
    "def add(a, b):\n    return a + b\n",
    "def square(x):\n    return x * x\n",
    "n = int(input())\nprint(n * 2)\n",
    "def f(xs):\n    total = 0\n    for x in xs:\n        total += x\n    return total\n",
    "# Write a function named add.\n# Return the sum of the list.\n",
    "caf\u00e9 \u00fcber na\u00efve \u2192 \u2713\n",
]


def make_tokenizer(path: Path):
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(CORPUS * 20, vocab_size=320, min_frequency=1,
                            special_tokens=["<|endoftext|>", "<|pad|>"], show_progress=False)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token="<|endoftext|>",
                                  pad_token="<|pad|>", bos_token="<|endoftext|>")
    tok.save_pretrained(str(path))
    return tok


def make_gpt2(path: Path, seed: int = 0, n_layer: int = 2, n_embd: int = 32) -> str:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = make_tokenizer(path)
    torch.manual_seed(seed)
    cfg = GPT2Config(n_layer=n_layer, n_embd=n_embd, n_head=2, vocab_size=len(tok),
                     n_positions=256, bos_token_id=tok.eos_token_id,
                     eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    GPT2LMHeadModel(cfg).save_pretrained(str(path))
    return str(path)


def make_t5(path: Path, seed: int = 0) -> str:
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    tok = make_tokenizer(path)
    torch.manual_seed(seed)
    cfg = T5Config(vocab_size=len(tok), d_model=32, d_ff=64, d_kv=16, num_layers=2,
                   num_heads=2, decoder_start_token_id=tok.pad_token_id,
                   pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    T5ForConditionalGeneration(cfg).save_pretrained(str(path))
    return str(path)


def make_sentencepiece_tokenizer(path: Path):
    """A tokenizer whose decoder is not byte-level (Metaspace, as in SentencePiece models)."""
    from tokenizers import SentencePieceBPETokenizer
    from transformers import PreTrainedTokenizerFast

    sp = SentencePieceBPETokenizer()
    sp.train_from_iterator(CORPUS * 20, vocab_size=200, min_frequency=1,
                           special_tokens=["<unk>", "</s>"], show_progress=False)
    tok = PreTrainedTokenizerFast(tokenizer_object=sp._tokenizer, eos_token="</s>",
                                  unk_token="<unk>")
    tok.save_pretrained(str(path))
    return tok


def make_memorizing_gpt2(path: Path, prompt: str, completion: str, steps: int = 300) -> str:
    """A tiny GPT-2 trained until it writes `completion` (then EOS) after `prompt` greedily."""
    import torch
    from transformers import AutoTokenizer, GPT2LMHeadModel

    make_gpt2(path, n_layer=2, n_embd=64)
    tok = AutoTokenizer.from_pretrained(str(path))
    model = GPT2LMHeadModel.from_pretrained(str(path))
    # prompt and completion tokenized apart, as the sampler sees them (BPE would merge
    # the prompt's final "\n" with the completion's indentation)
    ids = (tok(prompt, add_special_tokens=False)["input_ids"]
           + tok(completion, add_special_tokens=False)["input_ids"] + [tok.eos_token_id])
    x = torch.tensor([ids])
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        if loss.item() < 2e-3:
            break
    model.eval().save_pretrained(str(path))
    return str(path)


# -- tiny models of the real families (learner/tiny_model.py builds them) -------------------

FAMILY_NAMES = ("codet5", "llama", "qwen2")


def family_corpus() -> list[str]:
    """The tokenizer corpus of the family models: CORPUS and the prompts of the family tests."""
    from problems.prompts import build_prompt

    return CORPUS * 20 + [build_prompt(p).text for p in family_problems()] * 5


def family_problems():
    """A problem per format, each with one short reference solution."""
    from core.records import Problem

    return [
        Problem(task_id="fam/add", prompt="Return the sum of a and b.", format="call",
                fn_name="add", tests=[{"input": [1, 2], "output": 3},
                                      {"input": [5, -5], "output": 0}],
                solutions=["def add(a, b):\n    return a + b\n"]),
        Problem(task_id="fam/twice", prompt="Read n and print twice n.", format="stdio",
                tests=[{"input": "4\n", "output": "8\n"}],
                solutions=["n = int(input())\nprint(n * 2)\n"]),
        Problem(task_id="fam/square", prompt="def square(x):\n", format="assert",
                entry_point="square", starter_code="def square(x):\n",
                tests=["assert square(3) == 9"], solutions=["def square(x):\n    return x * x\n"]),
    ]


def make_family(family: str, path: Path, seed: int = 0) -> str:
    """A tiny model of `family` (hidden 64, 2 layers, 4 heads, 2 key/value heads)."""
    from learner.tiny_model import FamilySpec, build_family

    return build_family(family, family_corpus(), path, FamilySpec(seed=seed))
