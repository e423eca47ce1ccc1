"""`rltf eval`: generate, judge in the executor pool, and score with the unbiased pass@k.

    rltf eval --model DIR_OR_HUB_ID --problems F --n N --k 1,10 [--temperature T]
              [--device auto|cpu|cuda] [--dtype auto|float32|bfloat16] [--out report.json]

The same function, `evaluate`, serves the training driver (held-out pass@1 every E steps) with
samplers that are Ray actors; here a Sampler runs in-process, on the GPU where there is one
(`--device auto`) and in bf16 there (`--dtype auto`: bf16 on GPU, fp32 on CPU, unless the
config's sampler.dtype says otherwise). With n=1 and temperature 0 the single sample is the
greedy one. Prints a console table and writes a JSON report with
pass@k overall and by format and difficulty, and per problem.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter, defaultdict
from dataclasses import asdict
from typing import Callable, Sequence

from evaluation.passk import PassAtKReport, format_table, summarise
from executor.records import Problem, Solution

# generate(problems, n, temperature) -> list of (task_id, program) pairs, n per problem
Generate = Callable[[Sequence[Problem], int, float], list[tuple[str, str]]]


def evaluate(problems: Sequence[Problem], generate: Generate, pool, n: int = 1,
             ks: Sequence[int] = (1,), temperature: float = 0.0,
             batch_size: int = 16) -> tuple[PassAtKReport, dict]:
    """pass@k of the programs `generate` writes for `problems`, judged by `pool`."""
    by_id = {p.task_id: p for p in problems}
    passed: dict[str, int] = defaultdict(int)
    drawn: dict[str, int] = defaultdict(int)
    outcomes: Counter = Counter()
    t0 = time.monotonic()
    pairs = []
    for i in range(0, len(problems), batch_size):
        chunk = problems[i:i + batch_size]
        for j, (task_id, program) in enumerate(generate(chunk, n, temperature)):
            pairs.append((by_id[task_id], Solution(task_id=task_id, completion=program,
                                                   sample_id=f"eval-{i}-{j}")))
    gen_s = time.monotonic() - t0
    for (problem, _), result in zip(pairs, pool.run(pairs)):
        drawn[problem.task_id] += 1
        passed[problem.task_id] += result.outcome == "pass"
        outcomes[result.outcome] += 1
    counts = {tid: (drawn[tid], passed[tid]) for tid in by_id if drawn[tid]}
    groups = {"format": {p.task_id: p.format for p in problems},
              "difficulty": {p.task_id: p.difficulty or "unknown" for p in problems}}
    report = summarise(counts, ks, groups)
    extra = {"outcomes": dict(outcomes), "generate_s": gen_s,
             "wall_s": time.monotonic() - t0, "n": n, "temperature": temperature}
    return report, extra


def sampler_generate(sampler, settings_factory) -> Generate:
    """A Generate function over an in-process Sampler (actors.sampler.Sampler)."""

    def gen(problems: Sequence[Problem], n: int, temperature: float):
        settings = settings_factory(n=n, temperature=temperature)
        return [(s.task_id, s.program) for s in sampler.generate(list(problems), settings)
                if not getattr(s, "is_greedy", False) or n == 1]

    return gen


def main(argv: list[str] | None = None) -> int:
    from actors.sampler import Sampler, SamplerSettings
    from cluster.config import load_config
    from learner.models import ModelNotAvailable, learner_precision, pick_device, sampler_dtype
    from executor.pool import ExecutorPool
    from executor.records import read_jsonl

    ap = argparse.ArgumentParser(prog="rltf eval", description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a save_pretrained folder or a hub id")
    ap.add_argument("--problems", required=True, help="problems JSONL")
    ap.add_argument("--n", type=int, default=1, help="samples per problem")
    ap.add_argument("--k", default="1", help="comma-separated k values, e.g. 1,10")
    ap.add_argument("--temperature", type=float, default=None,
                    help="sampling temperature (default: greedy when n=1, else 0.8)")
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--split", default=None, help="only problems of this split (e.g. heldout)")
    ap.add_argument("--limit", type=int, default=None, help="at most this many problems")
    ap.add_argument("--out", default=None, help="write the JSON report here")
    ap.add_argument("--config", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto", help="auto (the GPU where there is one), cpu "
                    "or cuda")
    ap.add_argument("--dtype", default=None, help="auto, float32, bfloat16 or float16 "
                    "(default: the config's sampler.dtype)")
    ap.add_argument("overrides", nargs="*", help="config overrides, section.key=value")
    args = ap.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    problems, bad = read_jsonl(args.problems, Problem)
    for b in bad:
        print(f"skipped {b}", file=sys.stderr)
    if args.split:
        problems = [p for p in problems if p.split == args.split]
    problems = problems[: args.limit] if args.limit else problems
    if not problems:
        print("no problems to evaluate", file=sys.stderr)
        return 2
    ks = [int(k) for k in args.k.split(",") if k.strip()]
    temperature = args.temperature if args.temperature is not None else (
        0.0 if args.n == 1 else 0.8)
    device = pick_device(args.device)
    dtype = sampler_dtype(args.dtype or cfg.sampler.dtype,
                          learner_precision("auto", device.startswith("cuda")))
    try:
        sampler = Sampler(args.model, device=device, dtype=dtype, seed=args.seed)
    except ModelNotAvailable as err:
        print(f"rltf eval: {err}", file=sys.stderr)
        return 2

    def settings(n: int, temperature: float):
        greedy = temperature <= 0.0
        return SamplerSettings(n=0 if greedy else n, include_greedy=greedy,
                               temperature=max(temperature, 1e-5), top_p=cfg.sampler.top_p,
                               max_new_tokens=args.max_new_tokens,
                               max_prompt_tokens=cfg.sampler.max_prompt_tokens)

    with ExecutorPool(cfg.executor) as pool:
        report, extra = evaluate(problems, sampler_generate(sampler, settings), pool, n=args.n,
                                 ks=ks, temperature=temperature)
    print(format_table(report))
    print(f"outcomes: {extra['outcomes']}  ({extra['wall_s']:.1f}s)")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({**asdict(report), **extra, "model": args.model,
                       "problems_file": args.problems}, fh, indent=2)
    return 0
