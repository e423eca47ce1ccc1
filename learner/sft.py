"""Supervised fine-tuning on reference solutions: the paper's warm-start stage.

    rltf sft --problems suite.jsonl --model DIR_OR_HUB_ID --out runs/sft [--steps 600 --lr 3e-3]
    rltf sft --problems suite.jsonl --tiny --out runs/sft     # build the tiny model first
    rltf sft ... --deepspeed [--zero-stage 3 --offload-optimizer --micro-batch-size 4]
    torchrun --nproc-per-node 8 -m cluster.cli sft ... --deepspeed     # one rank per GPU

Works for any HF causal LM or encoder-decoder, by folder or hub id (`learner/models.py`). Each
example is the prompt, tokenized as the sampler tokenizes it (`learner.models.encode_prompts`:
special tokens for encoder–decoders, BOS where a decoder-only tokenizer adds one, the same
prompt limit), followed by the reference program's text after the program prefix (tokenized
as a continuation: `encode_continuations`), then EOS;
the loss counts only that target. The supervised term of `rltf train` uses `sft_pairs` too.

Two ways to train, the same batches and loss:
* plain PyTorch on one device (`--device auto`: the GPU where there is one, with bf16
  autocast there; fp32 on CPU): AdamW, linear warm-up then cosine decay to 10% of the peak;
* `--deepspeed`: the learner's own DeepSpeed engine (`learner/engine.py`: ZeRO stage, optimizer
  offload, bf16 on GPU), for warm starts of models too large for one device. Its cosine decay
  goes to 0. Run it under `torchrun` (or the `deepspeed` launcher) for several ranks; alone it
  is one rank. Each optimiser step splits the batch evenly over the ranks.
Batches are seeded; the result is saved with `save_pretrained` (model and tokenizer).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import socket
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Sequence

import torch

from learner.batch import PolicyBatch, collate
from learner.loss import label_mask, supervised_loss
from learner.models import encode_continuations, encode_prompts
from problems.prompts import build_prompt


@dataclass
class SFTSettings:
    steps: int = 600  # optimiser steps
    lr: float = 3e-3  # peak learning rate (the tiny model; use ~1e-5 for large models)
    batch_size: int = 32
    warmup: int = 30  # linear warm-up steps, then cosine decay to 10% of the peak
    max_len: int = 384  # longest prompt + target of a decoder-only example (the prompt loses
    #                     its middle first, as in the sampler)
    weight_decay: float = 0.01
    seed: int = 0
    log_every: int = 50
    split: str | None = "train"  # train only on problems of this split (None: all)
    max_prompt_tokens: int | None = None  # as sampler.max_prompt_tokens (None: same default)
    max_new_tokens: int = 160  # the sampler's, for the default prompt limit of decoder-only
    #                            models (context - max_new_tokens); unused otherwise
    device: str = "auto"  # auto (the GPU where there is one) | cpu | cuda
    precision: str = "auto"  # auto (bf16 on GPU, fp32 on CPU) | fp32 | bf16 | fp16 (DeepSpeed)
    deepspeed: bool = False  # train through the learner's DeepSpeed engine
    zero_stage: int = 2  # DeepSpeed only
    offload_optimizer: bool = False  # DeepSpeed only: optimizer state in CPU memory
    micro_batch_size: int = 8  # DeepSpeed only: examples per forward pass on one rank
    eval_every: int = 0  # call `on_eval` every this many steps and at the end (0: never;
    #                      plain PyTorch only)


def sft_pairs(problems: Sequence, tokenizer, encoder_decoder: bool = False,
              max_prompt_tokens: int | None = None) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, target ids + EOS) for every reference solution; the prompt ids are the
    sampler's for the same prompt and limit."""
    parts = [build_prompt(p) for p in problems]
    prompts, _ = encode_prompts(tokenizer, [x.text for x in parts],
                                encoder_decoder=encoder_decoder, limit=max_prompt_tokens)
    rows = [(prompt_ids, sol[len(part.program_prefix):] if sol.startswith(part.program_prefix)
             else sol) for p, part, prompt_ids in zip(problems, parts, prompts)
            for sol in p.solutions]
    targets = encode_continuations(tokenizer, [t for _, t in rows])
    return [(prompt_ids, ids + [tokenizer.eos_token_id])
            for (prompt_ids, _), ids in zip(rows, targets)]


@dataclass
class SupervisedObjective:
    """Token-level cross-entropy of a PolicyBatch's labels, for `PolicyEngine.train_step`."""

    def __call__(self, engine, batch: PolicyBatch):
        from learner.objectives import policy_logprobs

        batch = batch.to(engine.device)
        loss = supervised_loss(policy_logprobs(engine, batch), label_mask(batch.labels))
        return loss, {"loss/sl": float(loss.detach())}


def _batches(n: int, s: SFTSettings) -> Iterator[list[int]]:
    """s.steps seeded batches of example indices (each epoch shuffled, no example twice in
    an epoch)."""
    rng, order = random.Random(s.seed), []
    for _ in range(s.steps):
        if len(order) < s.batch_size:
            more = list(range(n))
            rng.shuffle(more)
            order += more
        idx, order = order[:s.batch_size], order[s.batch_size:]
        yield idx


def run_sft(model_dir: str, problems: Sequence, out_dir: str, s: SFTSettings = SFTSettings(),
            log=print, on_eval=None) -> dict:
    """Fine-tune on the reference solutions of `problems`; `on_eval(step, model, tokenizer)`
    (e.g. a validation check) runs every `s.eval_every` steps and at the end."""
    from learner.models import (is_encoder_decoder, load_config, load_tokenizer,
                                model_prompt_limit)

    random.seed(s.seed)
    torch.manual_seed(s.seed)
    tok = load_tokenizer(model_dir)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    config = load_config(model_dir)
    enc_dec = is_encoder_decoder(config)
    limit = model_prompt_limit(s.max_prompt_tokens, config, tok, s.max_new_tokens)
    if s.split:
        problems = [p for p in problems if p.split in (None, s.split)]
    pairs = sft_pairs(problems, tok, enc_dec, limit)
    if not pairs:
        raise ValueError("no reference solutions to train on")

    def batch(idx: list[int]) -> PolicyBatch:
        return collate([pairs[i][0] for i in idx], [pairs[i][1] for i in idx],
                       pad_id=tok.pad_token_id, encoder_decoder=enc_dec, max_len=s.max_len)

    t0 = time.time()
    if s.deepspeed:
        if on_eval is not None and s.eval_every:
            raise ValueError("a validation curve during the warm start needs the plain "
                             "PyTorch path (deepspeed=False)")
        losses, model = _train_deepspeed(model_dir, batch, len(pairs), s, log, t0)
    else:
        evaluate = (lambda step, m: on_eval(step, m, tok)) if on_eval else None
        losses, model = _train_torch(model_dir, batch, len(pairs), s, log, t0, evaluate)
    info = {"steps": s.steps, "examples": len(pairs), "first_loss": losses[0],
            "final_loss": sum(losses[-20:]) / len(losses[-20:]), "seconds": time.time() - t0,
            "max_prompt_tokens": limit, "settings": asdict(s)}
    if model is not None:  # rank 0 (or the only process) writes the result
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        model(out_dir)
        tok.save_pretrained(out_dir)
        (Path(out_dir) / "rltf_sft.json").write_text(json.dumps(info, indent=2))
    return info


def _log_progress(log, step: int, s: SFTSettings, losses: list[float], t0: float) -> None:
    if log and (step + 1) % s.log_every == 0:
        recent = losses[-s.log_every:]
        log(f"sft step {step + 1}/{s.steps} loss {sum(recent) / len(recent):.4f} "
            f"({time.time() - t0:.0f}s)")


def _train_torch(model_dir, batch, n, s: SFTSettings, log, t0, on_eval=None):
    """Plain PyTorch on one device; returns (losses, save function). `on_eval(step, model)`
    runs in eval mode without gradients every `s.eval_every` steps and at the end."""
    from learner.models import learner_precision, load_model, pick_device
    from learner.objectives import policy_logprobs

    device = pick_device(s.device)
    precision = learner_precision(s.precision, device.startswith("cuda"))
    if precision == "fp16":
        raise ValueError("precision fp16 needs loss scaling: use --deepspeed, or bf16 / fp32")
    model = load_model(model_dir).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)

    def lr_at(t: int) -> float:
        if t < s.warmup:
            return (t + 1) / s.warmup
        frac = (t - s.warmup) / max(1, s.steps - s.warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    model.train()
    losses: list[float] = []
    for step, idx in enumerate(_batches(n, s)):
        b = batch(idx).to(device)
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16,
                            enabled=precision == "bf16"):
            logp = policy_logprobs(model, b)
        loss = supervised_loss(logp.float(), label_mask(b.labels))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        _log_progress(log, step, s, losses, t0)
        if on_eval is not None and s.eval_every and (
                (step + 1) % s.eval_every == 0 or step + 1 == s.steps):
            model.eval()
            with torch.no_grad():
                on_eval(step + 1, model)
            model.train()
    model.eval()
    return losses, lambda out: model.save_pretrained(out)


def _dist_env() -> tuple[int, int, int]:
    """(rank, world size, local rank) from a launcher's environment, or one rank alone."""
    if "RANK" not in os.environ:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="0",
                          WORLD_SIZE="1", LOCAL_RANK="0")
    return (int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]),
            int(os.environ.get("LOCAL_RANK", "0")))


def _train_deepspeed(model_dir, batch, n, s: SFTSettings, log, t0):
    """The learner's DeepSpeed engine; returns (losses averaged over ranks, save function on
    rank 0, None elsewhere). Collective: every rank runs it."""
    from core.config import LearnerConfig
    from learner.engine import EngineSettings, PolicyEngine

    rank, world, local = _dist_env()
    per_rank, rem = divmod(s.batch_size, world)
    if rem or per_rank % s.micro_batch_size:
        raise ValueError(f"batch_size {s.batch_size} must split into {world} ranks x whole "
                         f"micro-batches of {s.micro_batch_size}; change batch_size or "
                         "micro_batch_size")
    learner = LearnerConfig(
        lr=s.lr, weight_decay=s.weight_decay, warmup_steps=s.warmup, schedule="cosine",
        grad_clip=1.0, micro_batch_size=s.micro_batch_size, zero_stage=s.zero_stage,
        offload_optimizer=s.offload_optimizer, precision=s.precision)
    engine = PolicyEngine(EngineSettings(
        model_path=model_dir, learner=learner, total_steps=s.steps,
        grad_accum=per_rank // s.micro_batch_size, seed=s.seed), rank, world, local)
    losses: list[float] = []
    objective = SupervisedObjective()
    for step, idx in enumerate(_batches(n, s)):
        mine = idx[rank * per_rank:(rank + 1) * per_rank]
        micro = [batch(mine[i:i + s.micro_batch_size])
                 for i in range(0, per_rank, s.micro_batch_size)]
        losses.append(engine.train_step(micro, objective).loss)
        _log_progress(log if rank == 0 else None, step, s, losses, t0)
    if world > 1:
        import torch.distributed as dist

        t = torch.tensor(losses, device=engine.device)
        dist.all_reduce(t)
        losses = (t / world).tolist()
    full = engine.full_state_dict()  # collective under ZeRO-3
    if rank != 0:
        return losses, None
    return losses, lambda out: engine.model.save_pretrained(out, state_dict=full,
                                                            safe_serialization=True)


_OPTIONAL = {"split": str, "max_prompt_tokens": int}  # settings whose default is None-able


def main(argv: list[str] | None = None) -> int:
    from core.records import Problem, read_jsonl
    from learner.models import ModelNotAvailable
    from learner.tiny_model import TinyModelSpec, build_tiny_model

    ap = argparse.ArgumentParser(prog="rltf sft", description=__doc__.splitlines()[0])
    ap.add_argument("--problems", required=True, help="problems JSONL with solutions")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="a save_pretrained folder or a hub id to fine-tune")
    src.add_argument("--tiny", action="store_true", help="build the embedded tiny model first")
    ap.add_argument("--out", required=True, help="folder for the fine-tuned model")
    for name, default in asdict(SFTSettings()).items():
        flag = "--" + name.replace("_", "-")
        if isinstance(default, bool):
            ap.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
        elif name in _OPTIONAL:
            ap.add_argument(flag, type=_OPTIONAL[name], default=default)
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
    try:
        info = run_sft(model_dir, problems, args.out, settings,
                       log=lambda m: print(m, file=sys.stderr))
    except ModelNotAvailable as err:
        print(f"rltf sft: {err}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps({k: v for k, v in info.items() if k != "settings"}))
    return 0
