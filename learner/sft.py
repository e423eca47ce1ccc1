"""Supervised fine-tuning on reference solutions: the paper's warm-start stage.

    rltf sft --problems suite.jsonl --model DIR --out runs/sft [--steps 600 --lr 3e-3]
    rltf sft --problems suite.jsonl --tiny --out runs/sft     # build the tiny model first

Works for any HF causal LM or encoder-decoder in a local folder. Each example is the prompt
(as `problems.prompts.build_prompt` writes it) followed by the reference program's text after
the program prefix, then EOS; the loss counts only that target. AdamW, linear warm-up then
cosine decay, seeded batches, saved with `save_pretrained` (model and tokenizer).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import torch

from learner.batch import collate
from learner.loss import label_mask, supervised_loss
from problems.prompts import build_prompt


@dataclass
class SFTSettings:
    steps: int = 600  # optimiser steps
    lr: float = 3e-3  # peak learning rate (the tiny model; use ~1e-5 for large models)
    batch_size: int = 32
    warmup: int = 30  # linear warm-up steps, then cosine decay to 10% of the peak
    max_len: int = 384  # longest prompt + target in tokens (prompts are cut on the left)
    weight_decay: float = 0.01
    seed: int = 0
    log_every: int = 50
    split: str | None = "train"  # train only on problems of this split (None: all)


def sft_pairs(problems: Sequence, tokenizer) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, target ids + EOS) for every reference solution."""
    pairs = []
    for p in problems:
        parts = build_prompt(p)
        prompt_ids = tokenizer(parts.text, add_special_tokens=False)["input_ids"]
        for sol in p.solutions:
            target = sol[len(parts.program_prefix):] if sol.startswith(parts.program_prefix) \
                else sol
            ids = tokenizer(target, add_special_tokens=False)["input_ids"]
            pairs.append((prompt_ids, ids + [tokenizer.eos_token_id]))
    return pairs


def run_sft(model_dir: str, problems: Sequence, out_dir: str, s: SFTSettings = SFTSettings(),
            log=print) -> dict:
    from transformers import AutoTokenizer

    from learner.engine import load_model
    from learner.objectives import policy_logprobs

    random.seed(s.seed)
    torch.manual_seed(s.seed)
    model = load_model(model_dir)
    tok = AutoTokenizer.from_pretrained(model_dir)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    if s.split:
        problems = [p for p in problems if p.split in (None, s.split)]
    pairs = sft_pairs(problems, tok)
    if not pairs:
        raise ValueError("no reference solutions to train on")
    enc_dec = bool(getattr(model.config, "is_encoder_decoder", False))
    opt = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)

    def lr_at(t: int) -> float:
        if t < s.warmup:
            return (t + 1) / s.warmup
        frac = (t - s.warmup) / max(1, s.steps - s.warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    rng = random.Random(s.seed)
    model.train()
    t0 = time.time()
    losses = []
    order: list[int] = []
    for step in range(s.steps):
        if len(order) < s.batch_size:
            more = list(range(len(pairs)))
            rng.shuffle(more)
            order += more
        idx, order = order[:s.batch_size], order[s.batch_size:]
        batch = collate([pairs[i][0] for i in idx], [pairs[i][1] for i in idx],
                        pad_id=tok.pad_token_id, encoder_decoder=enc_dec, max_len=s.max_len)
        logp = policy_logprobs(model, batch)
        loss = supervised_loss(logp, label_mask(batch.labels))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if log and (step + 1) % s.log_every == 0:
            recent = losses[-s.log_every:]
            log(f"sft step {step + 1}/{s.steps} loss {sum(recent) / len(recent):.4f} "
                f"({time.time() - t0:.0f}s)")
    model.eval()
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    info = {"steps": s.steps, "examples": len(pairs), "first_loss": losses[0],
            "final_loss": sum(losses[-20:]) / len(losses[-20:]), "seconds": time.time() - t0,
            "settings": asdict(s)}
    (Path(out_dir) / "rltf_sft.json").write_text(json.dumps(info, indent=2))
    return info


def main(argv: list[str] | None = None) -> int:
    from executor.records import Problem, read_jsonl
    from learner.tiny_model import TinyModelSpec, build_tiny_model

    ap = argparse.ArgumentParser(prog="rltf sft", description=__doc__.splitlines()[0])
    ap.add_argument("--problems", required=True, help="problems JSONL with solutions")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="a save_pretrained model folder to fine-tune")
    src.add_argument("--tiny", action="store_true", help="build the embedded tiny model first")
    ap.add_argument("--out", required=True, help="folder for the fine-tuned model")
    for name, default in asdict(SFTSettings()).items():
        flag = "--" + name.replace("_", "-")
        if isinstance(default, bool) or default is None:
            ap.add_argument(flag, default=default)
        else:
            ap.add_argument(flag, type=type(default), default=default)
    args = ap.parse_args(argv)
    problems, bad = read_jsonl(args.problems, Problem)
    for b in bad:
        print(f"skipped {b}", file=sys.stderr)
    model_dir = args.model
    if args.tiny:
        model_dir = build_tiny_model(problems, Path(args.out) / "base", TinyModelSpec())
    settings = SFTSettings(**{k: getattr(args, k) for k in asdict(SFTSettings())})
    info = run_sft(model_dir, problems, args.out, settings,
                   log=lambda m: print(m, file=sys.stderr))
    print(json.dumps({k: v for k, v in info.items() if k != "settings"}))
    return 0
