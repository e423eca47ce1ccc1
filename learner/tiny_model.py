"""Tiny models built here, tokenizer included, saved with `save_pretrained` so that everything
else loads them like any pretrained checkpoint. Nothing is downloaded.

    build_tiny_model(problems, "runs/tiny/base", TinyModelSpec())      # the embedded GPT-2
    build_family("codet5", corpus(problems), "runs/tiny-codet5")       # a real family's shape
    rltf build-tiny --family codet5|llama|qwen2|gpt2 --out DIR [--problems F.jsonl ...]

The families are randomly initialised models of the real architectures, built from their
`transformers` configs with their own tokenizer classes, each tokenizer a BPE trained on the
task corpus (the training problems' prompts and reference programs; held-out splits never):

* codet5: `T5ForConditionalGeneration` shaped like CodeT5 (ReLU feed-forward, tied embeddings,
  decoder start = pad) with CodeT5's RoBERTa-style byte-level BPE: `<pad>`=0, `<s>`=1,
  `</s>`=2, `<unk>`=3, `<mask>`=4; an encoder input reads `<s> prompt </s>`;
* llama: `LlamaForCausalLM` (rotary positions, grouped-query attention) with Llama's
  SentencePiece-style BPE (Metaspace, byte fallback): `<unk>`=0, `<s>`=1, `</s>`=2, BOS
  added in front of every text;
* qwen2: `Qwen2ForCausalLM` (rotary positions, grouped-query attention, tied embeddings)
  with Qwen2's byte-level BPE: `<|endoftext|>` is EOS and padding, no BOS;
* gpt2: the embedded default model (`build_tiny_model`).

Dropout is off in every tiny model, so a learner's forward pass matches the sampler's.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

from problems.prompts import build_prompt

EOS = "<|endoftext|>"
PAD = "<|pad|>"
# GPT-2's tanh GELU as one fused kernel. GPT-2's default "gelu_new" is the same function
# composed of Python-level pow/tanh ops (equal up to float rounding) and costs about a fifth of
# sampling on CPU. Not a TinyModelSpec field on purpose: `rltf train` keys its cache of warm
# tiny models on the spec, and a model cached with "gelu_new" stays valid (its config names
# its activation), so it is reused rather than rebuilt and warm-started again.
ACTIVATION = "gelu_pytorch_tanh"


@dataclass(frozen=True)
class TinyModelSpec:
    vocab_size: int = 800
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    n_positions: int = 384
    seed: int = 0


HELD_OUT_SPLITS = ("val", "test", "heldout")


def corpus(problems: Iterable) -> list[str]:
    """Prompt texts and reference programs of the TRAINING problems: what the tokenizer should
    compress well. Problems of a held-out split (val, test) are left out, so that the
    vocabulary learns nothing from them."""
    out = []
    for p in problems:
        if p.split in HELD_OUT_SPLITS:
            continue
        parts = build_prompt(p)
        out.append(parts.text)
        out.extend(p.solutions)
    return out


def train_tokenizer(texts: list[str], vocab_size: int):
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=2,
                            special_tokens=[EOS, PAD], show_progress=False)
    return PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token=EOS,
                                   bos_token=EOS, pad_token=PAD, model_max_length=4096)


def build_tiny_model(problems: Iterable, out_dir: str | Path,
                     spec: TinyModelSpec = TinyModelSpec()) -> str:
    """Train the tokenizer on the training problems' corpus, build a randomly initialised
    model, save both to `out_dir` and return it."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    texts = corpus(problems)
    if not texts:
        raise ValueError("no training problems to train the tokenizer on (held-out splits "
                         "are never used)")
    tok = train_tokenizer(texts, spec.vocab_size)
    torch.manual_seed(spec.seed)
    cfg = GPT2Config(vocab_size=len(tok), n_positions=spec.n_positions, n_embd=spec.n_embd,
                     n_layer=spec.n_layer, n_head=spec.n_head, bos_token_id=tok.eos_token_id,
                     eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                     activation_function=ACTIVATION)
    model = GPT2LMHeadModel(cfg)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(str(out_dir))
    tok.save_pretrained(str(out_dir))
    (out_dir / "rltf_tiny_spec.json").write_text(json.dumps(asdict(spec)))
    return str(out_dir)


# -- the real families -------------------------------------------------------------------------

FAMILIES = ("codet5", "llama", "qwen2", "gpt2")


@dataclass(frozen=True)
class FamilySpec:
    hidden: int = 64
    layers: int = 2  # encoder and decoder layers each, for codet5
    heads: int = 4
    kv_heads: int = 2  # grouped-query attention (llama, qwen2): fewer key/value heads
    vocab_size: int = 600  # BPE budget, special (and Llama's 256 byte) tokens included
    context: int = 512  # position limit of the decoder-only models; CodeT5's tokenizer limit
    seed: int = 0


def _train_bpe(cls, texts: Sequence[str], specials: list[str], vocab_size: int,
               byte_level: bool, **kwargs):
    """A `cls` tokenizer (RobertaTokenizer, LlamaTokenizer, Qwen2Tokenizer, ...) whose vocab
    and merges are a BPE trained on `texts` with that class's own normaliser and
    pre-tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    empty = cls(**kwargs)
    tk = Tokenizer(models.BPE(unk_token=None if byte_level else "<unk>",
                              byte_fallback=not byte_level))
    tk.normalizer = empty.backend_tokenizer.normalizer
    tk.pre_tokenizer = empty.backend_tokenizer.pre_tokenizer
    alphabet = pre_tokenizers.ByteLevel.alphabet() if byte_level else []
    tk.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, special_tokens=specials,
        initial_alphabet=alphabet, show_progress=False))
    model = json.loads(tk.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return cls(vocab=model["vocab"], merges=merges, **kwargs)


def family_tokenizer(family: str, texts: Sequence[str], spec: FamilySpec = FamilySpec()):
    from transformers import LlamaTokenizer, Qwen2Tokenizer, RobertaTokenizer

    if family == "codet5":
        return _train_bpe(RobertaTokenizer, texts, ["<pad>", "<s>", "</s>", "<unk>", "<mask>"],
                          spec.vocab_size, True, model_max_length=spec.context)
    if family == "llama":
        byte_tokens = [f"<0x{i:02X}>" for i in range(256)]
        return _train_bpe(LlamaTokenizer, texts, ["<unk>", "<s>", "</s>"] + byte_tokens,
                          spec.vocab_size, False, add_bos_token=True, add_eos_token=False,
                          model_max_length=spec.context)
    if family == "qwen2":
        return _train_bpe(Qwen2Tokenizer, texts, ["<|endoftext|>"], spec.vocab_size, True,
                          model_max_length=spec.context)
    raise ValueError(f"unknown family {family!r}: use one of {FAMILIES}")


def family_model(family: str, tok, spec: FamilySpec = FamilySpec()):
    """A randomly initialised model of `family` for tokenizer `tok` (seeded by spec.seed)."""
    import torch
    from transformers import (LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM,
                              T5Config, T5ForConditionalGeneration)

    torch.manual_seed(spec.seed)
    common = dict(vocab_size=len(tok), hidden_size=spec.hidden,
                  intermediate_size=2 * spec.hidden, num_hidden_layers=spec.layers,
                  num_attention_heads=spec.heads, num_key_value_heads=spec.kv_heads,
                  max_position_embeddings=spec.context, attention_dropout=0.0)
    if family == "codet5":
        cfg = T5Config(vocab_size=len(tok), d_model=spec.hidden, d_ff=4 * spec.hidden,
                       d_kv=spec.hidden // spec.heads, num_heads=spec.heads,
                       num_layers=spec.layers, num_decoder_layers=spec.layers,
                       feed_forward_proj="relu", dropout_rate=0.0, tie_word_embeddings=True,
                       pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                       eos_token_id=tok.eos_token_id, decoder_start_token_id=tok.pad_token_id)
        return T5ForConditionalGeneration(cfg)
    if family == "llama":
        return LlamaForCausalLM(LlamaConfig(**common, bos_token_id=tok.bos_token_id,
                                            eos_token_id=tok.eos_token_id,
                                            tie_word_embeddings=False))
    if family == "qwen2":
        return Qwen2ForCausalLM(Qwen2Config(**common, bos_token_id=None,
                                            eos_token_id=tok.eos_token_id,
                                            pad_token_id=tok.pad_token_id,
                                            tie_word_embeddings=True, use_sliding_window=False))
    raise ValueError(f"unknown family {family!r}: use one of {FAMILIES}")


def build_family(family: str, texts: Sequence[str], out_dir: str | Path,
                 spec: FamilySpec = FamilySpec()) -> str:
    """Train the family's tokenizer on `texts`, build the model, save both to `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok = family_tokenizer(family, texts, spec)
    model = family_model(family, tok, spec)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(str(out_dir))
    tok.save_pretrained(str(out_dir))
    (out_dir / "rltf_tiny_spec.json").write_text(json.dumps({"family": family,
                                                             **asdict(spec)}))
    return str(out_dir)


def main(argv: list[str] | None = None) -> int:
    """`rltf build-tiny`: a tiny model of a real family, tokenizer trained on the problems."""
    from core.records import Problem, read_jsonl

    ap = argparse.ArgumentParser(prog="rltf build-tiny", description=main.__doc__)
    ap.add_argument("--family", required=True, choices=FAMILIES)
    ap.add_argument("--out", required=True, help="folder to write (save_pretrained layout)")
    ap.add_argument("--problems", nargs="*", default=None,
                    help="problems JSONL files whose prompts and reference programs train "
                    "the tokenizer (default: the built-in suite)")
    for name, default in asdict(FamilySpec()).items():
        ap.add_argument("--" + name.replace("_", "-"), type=int, default=default)
    args = ap.parse_args(argv)
    if args.problems:
        problems = []
        for path in args.problems:
            got, bad = read_jsonl(path, Problem)
            for b in bad:
                print(f"skipped {b}", file=sys.stderr)
            problems += got
    else:
        from problems.synth import generate_suite

        problems = generate_suite(400, 0)
    if not problems:
        print("rltf build-tiny: no problems to train the tokenizer on", file=sys.stderr)
        return 2
    if args.family == "gpt2":
        out = build_tiny_model(problems, args.out, TinyModelSpec(seed=args.seed))
    else:
        spec = FamilySpec(**{k: getattr(args, k) for k in asdict(FamilySpec())})
        out = build_family(args.family, corpus(problems), args.out, spec)
    print(out)
    return 0
