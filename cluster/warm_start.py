"""The embedded tiny model's warm start, cached in `model.cache_dir`.

    model_path = warm_start(cfg, problems, log)      # problems: train / val / test lists

1. The byte-level BPE tokenizer is trained on training text only (prompts and references of
   the train split; `learner.tiny_model.corpus` drops held-out splits), and a randomly
   initialised tiny GPT-2 is built.
2. Supervised fine-tuning (`learner.sft.run_sft`) on the training problems that carry a
   reference, for `model.warm_start_steps` steps (chosen on the validation curve so that the
   warm start sits on its plateau, and "more supervised steps" is a fair control). Every
   `model.warm_start_eval_every` steps the validation curve gets a point: the loss on the
   validation references and greedy pass@1 on the validation split, per slice.
3. The warm start is evaluated once at the run's evaluation settings on the validation and
   test splits (the "before" figures); every run that starts from this cached warm start,
   with the same evaluation settings, reads them instead of evaluating again.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

CURVE_FILE = "rltf_warm_curve.json"


def eval_settings(cfg, prompt_limit: int | None = None):
    """The sampler settings of every evaluation: eval_samples programs at eval_temperature,
    plus the greedy one when eval_greedy; prompts cut to `prompt_limit` tokens, as in
    training."""
    from actors.sampler import SamplerSettings

    t = cfg.train
    return SamplerSettings(n=t.eval_samples, include_greedy=t.eval_greedy,
                           temperature=t.eval_temperature, top_p=cfg.sampler.top_p,
                           max_new_tokens=cfg.sampler.max_new_tokens,
                           batch_size=t.eval_batch_size, max_prompt_tokens=prompt_limit)


def prompt_limit_of(cfg, model_path: str) -> int | None:
    """The prompt limit the samplers and the supervised term use for this model."""
    from learner.models import load_config, load_tokenizer, model_prompt_limit

    return model_prompt_limit(cfg.sampler.max_prompt_tokens, load_config(model_path),
                              load_tokenizer(model_path), cfg.sampler.max_new_tokens)


def warm_seed(cfg) -> int:
    """The seed the warm start (and its stored evaluation) is made with."""
    return cfg.seed if cfg.model.warm_start_seed is None else cfg.model.warm_start_seed


def eval_problems(cfg, problems: list) -> list:
    return problems[: cfg.data.max_heldout or len(problems)]


def eval_cache_path(model_path: str, cfg, split: str, problems: list) -> Path:
    """Where the evaluation of the weights in `model_path` at the run's settings is kept."""
    s = eval_settings(cfg)
    key = json.dumps([s.n, s.include_greedy, s.temperature, s.top_p, s.max_new_tokens,
                      cfg.sampler.max_prompt_tokens,
                      warm_seed(cfg), [p.task_id for p in problems]])
    digest = hashlib.sha1(key.encode()).hexdigest()[:12]
    return Path(model_path) / "rltf_eval" / f"{split}-{digest}.json"


def cached_eval(model_path: str, cfg, split: str, problems: list):
    """The stored evaluation of these weights on these problems, or None."""
    from evaluation.run import EvalResult

    path = eval_cache_path(model_path, cfg, split, problems)
    if not path.exists():
        return None
    return EvalResult.from_json(json.loads(path.read_text()))


def _reference_loss(model, tok, problems: list, limit: int | None) -> float | None:
    """Mean token cross-entropy of the model on the problems' reference programs."""
    import torch

    from learner.batch import collate
    from learner.loss import label_mask, supervised_loss
    from learner.objectives import policy_logprobs
    from learner.sft import sft_pairs

    pairs = sft_pairs([p for p in problems if p.solutions], tok,
                      max_prompt_tokens=limit)
    if not pairs:
        return None
    total, tokens = 0.0, 0
    for i in range(0, len(pairs), 64):
        chunk = pairs[i:i + 64]
        batch = collate([a for a, _ in chunk], [b for _, b in chunk], pad_id=tok.pad_token_id)
        mask = label_mask(batch.labels)
        with torch.no_grad():
            loss = supervised_loss(policy_logprobs(model, batch), mask)
        n = float(mask.sum())
        total, tokens = total + float(loss) * n, tokens + n
    return total / max(tokens, 1.0)


def warm_start(cfg, problems: dict, log) -> str:
    """Build, warm-start and evaluate the tiny model once; return its folder."""
    from actors.sampler import Sampler, SamplerSettings
    from evaluation.run import evaluate, sampler_generate
    from executor.pool import ExecutorPool
    from learner.sft import SFTSettings, run_sft
    from learner.tiny_model import TinyModelSpec, build_tiny_model

    seed = warm_seed(cfg)
    spec = TinyModelSpec(seed=seed)
    sft = SFTSettings(steps=cfg.model.warm_start_steps, seed=seed,
                      eval_every=cfg.model.warm_start_eval_every,
                      max_prompt_tokens=cfg.sampler.max_prompt_tokens,
                      max_new_tokens=cfg.sampler.max_new_tokens)
    data = cfg.data.model_dump(exclude={"max_heldout"})
    key = json.dumps([data, seed, spec.__dict__, sft.__dict__], sort_keys=True, default=str)
    folder = Path(cfg.model.cache_dir) / f"tiny-{hashlib.sha1(key.encode()).hexdigest()[:12]}"
    warm = folder / "warm"
    val, test = eval_problems(cfg, problems["val"]), eval_problems(cfg, problems["test"])
    before = [("test", test)] + ([("val", val)] if cfg.train.eval_val else [])
    done = warm / "rltf_sft.json"
    if done.exists() and all(cached_eval(str(warm), cfg, split, probs) is not None
                             for split, probs in before if probs):
        log(f"using the cached tiny model {warm}")
        return str(warm)
    t0 = time.time()
    with ExecutorPool(cfg.executor) as pool:
        if not done.exists():
            log(f"building the tiny model and its warm start in {folder} (first run only)")
            base = build_tiny_model(problems["train"], folder / "base", spec)
            sampler = Sampler(base, seed=seed)
            limit = prompt_limit_of(cfg, base)
            greedy = SamplerSettings(n=0, include_greedy=True,
                                     max_new_tokens=cfg.sampler.max_new_tokens,
                                     batch_size=cfg.train.eval_batch_size,
                                     max_prompt_tokens=limit)
            curve: list[dict] = []

            def on_eval(step: int, model, tok) -> None:
                sampler.load_weights(model.state_dict(), version=step)
                _, res = evaluate(val, sampler_generate(sampler, greedy), pool, n=0,
                                  temperature=0.0, split="val")
                point = {"step": step, "val_loss": _reference_loss(model, tok, val, limit),
                         **{f"greedy/{name}": row["greedy"]["mean"]
                            for name, row in res.figures().items()}}
                curve.append(point)
                loss = f"{point['val_loss']:.3f}" if point["val_loss"] is not None else "-"
                log(f"warm start step {step}: validation loss {loss}, greedy pass@1 " +
                    ", ".join(f"{k.split('/')[1]} {v * 100:.1f}%" for k, v in point.items()
                              if k.startswith("greedy/")))

            run_sft(base, problems["train"], str(warm), sft, log=log,
                    on_eval=on_eval if val else None)
            (warm / CURVE_FILE).write_text(json.dumps(curve, indent=1))
        sampler = Sampler(str(warm), seed=seed)
        settings = eval_settings(cfg, prompt_limit_of(cfg, str(warm)))  # reads the model's files
        for split, probs in before:
            if not probs or cached_eval(str(warm), cfg, split, probs) is not None:
                continue
            _, res = evaluate(probs, sampler_generate(sampler, settings), pool,
                              n=cfg.train.eval_samples, temperature=cfg.train.eval_temperature,
                              split=split)
            path = eval_cache_path(str(warm), cfg, split, probs)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(res.to_json()))
    log(f"warm start ready in {time.time() - t0:.0f}s")
    return str(warm)


def warm_curve(model_path: str) -> list[dict]:
    path = Path(model_path) / CURVE_FILE
    return json.loads(path.read_text()) if path.exists() else []
