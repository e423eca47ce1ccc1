"""The embedded tiny model: a byte-level BPE tokenizer trained here on the task corpus and a
small GPT-2-style causal LM, saved with `save_pretrained` so that everything else loads it like
any pretrained checkpoint (`AutoTokenizer` / `AutoModelForCausalLM.from_pretrained`).

    build_tiny_model(problems, "runs/tiny/base", TinyModelSpec())
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

from problems.prompts import build_prompt

EOS = "<|endoftext|>"
PAD = "<|pad|>"


@dataclass(frozen=True)
class TinyModelSpec:
    vocab_size: int = 800
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    n_positions: int = 384
    seed: int = 0


def corpus(problems: Iterable) -> list[str]:
    """Prompt texts and reference programs: what the tokenizer should compress well."""
    out = []
    for p in problems:
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
    """Train the tokenizer on the problems' corpus, build a randomly initialised model, save
    both to `out_dir` and return it."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer(corpus(problems), spec.vocab_size)
    torch.manual_seed(spec.seed)
    cfg = GPT2Config(vocab_size=len(tok), n_positions=spec.n_positions, n_embd=spec.n_embd,
                     n_layer=spec.n_layer, n_head=spec.n_head, bos_token_id=tok.eos_token_id,
                     eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    model = GPT2LMHeadModel(cfg)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(str(out_dir))
    tok.save_pretrained(str(out_dir))
    (out_dir / "rltf_tiny_spec.json").write_text(__import__("json").dumps(asdict(spec)))
    return str(out_dir)
