"""`rltf eval`: generate, judge in the executor pool, and score with the unbiased pass@k.

    rltf eval --model DIR_OR_HUB_ID --problems F --n 10 --k 1,10 [--temperature T] [--greedy]
              [--device auto|cpu|cuda] [--dtype auto|float32|bfloat16] [--out report.json]

The same function, `evaluate`, serves the training driver (validation and test pass@1) with
samplers that are Ray actors, and the warm start with an in-process Sampler; here a Sampler
runs in-process, on the GPU where there is one (`--device auto`) and in bf16 there (`--dtype
auto`: bf16 on GPU, fp32 on CPU, unless the config's sampler.dtype says otherwise). For each
problem it draws n samples at the evaluation temperature (pass@1 = c / n, the unbiased
estimator with k = 1) and, when asked, one greedy decode. Every figure comes with its 95%
confidence interval (`evaluation.passk.normal_ci`: the normal approximation over per-problem
pass rates), overall and per slice (`metadata.teacher` of the built-in suite: families trained
with references, families seen only through tests). Prints a console table and writes a JSON
report.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

from evaluation.passk import PassAtKReport, format_table, normal_ci, summarise
from core.records import Problem, Solution, slice_of

# generate(problems) -> (task_id, program, is_greedy) for every sample drawn
Generate = Callable[[Sequence[Problem]], list[tuple[str, str, bool]]]


@dataclass
class EvalResult:
    """Per-problem counts of one evaluation: n sampled programs (c passed) and the greedy
    program's verdict (None without greedy decoding)."""

    split: str
    n: int
    temperature: float
    problems: dict[str, dict] = field(default_factory=dict)  # task_id -> n, c, greedy, slice
    outcomes: dict[str, int] = field(default_factory=dict)
    generate_s: float = 0.0
    wall_s: float = 0.0

    def values(self, what: str, slice_: str | None = None) -> dict[str, float]:
        """task_id -> pass@1 estimate (what="pass@1": c / n) or greedy pass (0/1)."""
        out = {}
        for tid, r in self.problems.items():
            if slice_ is not None and r["slice"] != slice_:
                continue
            if what == "pass@1" and r["n"]:
                out[tid] = r["c"] / r["n"]
            elif what == "greedy" and r["greedy"] is not None:
                out[tid] = float(r["greedy"])
        return out

    def slices(self) -> list[str]:
        return sorted({r["slice"] for r in self.problems.values()})

    def figures(self) -> dict[str, dict]:
        """{"all" | slice: {"pass@1": interval, "greedy": interval, "problems": m}}."""
        out = {}
        names = ["all"] + [s for s in self.slices() if s != "all"]
        for name in names:
            sl = None if name == "all" else name
            row: dict = {"problems": sum(1 for r in self.problems.values()
                                         if sl is None or r["slice"] == sl)}
            for what in ("pass@1", "greedy"):
                vals = list(self.values(what, sl).values())
                if vals:
                    row[what] = normal_ci(vals).as_dict()
            out[name] = row
        return out

    def headline(self) -> float:
        """pass@1 over all problems (sampled when n > 0, else greedy)."""
        vals = self.values("pass@1" if self.n else "greedy")
        return sum(vals.values()) / max(len(vals), 1)

    def lines(self) -> list[str]:
        """One console line per slice, each figure with its 95% CI."""
        out = []
        for name, row in self.figures().items():
            parts = []
            for what, label in (("pass@1", f"pass@1 (n={self.n}, T={self.temperature:g})"),
                                ("greedy", "greedy")):
                if what in row:
                    iv = row[what]
                    parts.append(f"{label} {iv['mean'] * 100:.1f}% "
                                 f"[{iv['lo'] * 100:.1f}, {iv['hi'] * 100:.1f}]")
            out.append(f"{self.split} {name} ({row['problems']} problems): " + ", ".join(parts))
        return out

    def to_json(self) -> dict:
        return {**asdict(self), "figures": self.figures()}

    @classmethod
    def from_json(cls, data: dict) -> "EvalResult":
        return cls(**{k: data[k] for k in ("split", "n", "temperature", "problems",
                                             "outcomes", "generate_s", "wall_s")})


def evaluate(problems: Sequence[Problem], generate: Generate, pool, n: int,
             temperature: float, split: str = "", ks: Sequence[int] = (1,),
             batch_size: int = 64) -> tuple[PassAtKReport | None, EvalResult]:
    """Judge what `generate` writes for `problems` with `pool`; pass@k over the sampled
    programs (None when there are none) and the per-problem record."""
    by_id = {p.task_id: p for p in problems}
    t0 = time.monotonic()
    pairs, greedy_flags = [], []
    for i in range(0, len(problems), batch_size):
        for j, (task_id, program, is_greedy) in enumerate(generate(problems[i:i + batch_size])):
            pairs.append((by_id[task_id], Solution(task_id=task_id, completion=program,
                                                   sample_id=f"eval-{i}-{j}")))
            greedy_flags.append(is_greedy)
    gen_s = time.monotonic() - t0
    res = EvalResult(split=split, n=n, temperature=temperature)
    for p in problems:
        res.problems[p.task_id] = {"n": 0, "c": 0, "greedy": None, "slice": slice_of(p),
                                   "family": str(p.metadata.get("family") or p.format)}
    outcomes: Counter = Counter()
    for (problem, _), is_greedy, result in zip(pairs, greedy_flags, pool.run(pairs)):
        rec = res.problems[problem.task_id]
        ok = result.outcome == "pass"
        if is_greedy:
            rec["greedy"] = int(ok)
        else:
            rec["n"] += 1
            rec["c"] += int(ok)
        outcomes[result.outcome] += 1
    res.outcomes, res.generate_s, res.wall_s = dict(outcomes), gen_s, time.monotonic() - t0
    counts = {tid: (r["n"], r["c"]) for tid, r in res.problems.items() if r["n"]}
    report = None
    if counts:
        groups = {"format": {p.task_id: p.format for p in problems},
                  "slice": {p.task_id: slice_of(p) for p in problems}}
        report = summarise(counts, ks, groups)
    return report, res


def sampler_generate(sampler, settings) -> Generate:
    """A Generate function over an in-process Sampler (actors.sampler.Sampler)."""

    def gen(problems: Sequence[Problem]):
        return [(s.task_id, s.program, s.is_greedy)
                for s in sampler.generate(list(problems), settings)]

    return gen


def main(argv: list[str] | None = None) -> int:
    from actors.sampler import Sampler, SamplerSettings
    from core.config_reading import load_config
    from learner.models import ModelNotAvailable, learner_precision, pick_device, sampler_dtype
    from executor.pool import ExecutorPool
    from core.records import read_jsonl

    ap = argparse.ArgumentParser(prog="rltf eval", description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a save_pretrained folder or a hub id")
    ap.add_argument("--problems", required=True, help="problems JSONL")
    ap.add_argument("--n", type=int, default=1, help="samples per problem")
    ap.add_argument("--k", default="1", help="comma-separated k values, e.g. 1,10")
    ap.add_argument("--temperature", type=float, default=None,
                    help="sampling temperature (default: greedy when n=1, else 0.8)")
    ap.add_argument("--greedy", action="store_true", help="also decode one greedy program")
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--split", default=None, help="only problems of this split (e.g. test)")
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
    greedy_only = temperature <= 0.0
    n = 0 if greedy_only else args.n
    settings = SamplerSettings(n=n, include_greedy=greedy_only or args.greedy,
                               temperature=max(temperature, 1e-5), top_p=cfg.sampler.top_p,
                               max_new_tokens=args.max_new_tokens,
                               max_prompt_tokens=cfg.sampler.max_prompt_tokens)
    with ExecutorPool(cfg.executor) as pool:
        report, res = evaluate(problems, sampler_generate(sampler, settings), pool, n=n,
                               temperature=temperature, split=args.split or "", ks=ks)
    if greedy_only:  # the one greedy program per problem is the pass@1 sample
        counts = {t: (1, r["greedy"]) for t, r in res.problems.items()}
        report = summarise(counts, ks, {"format": {p.task_id: p.format for p in problems}})
    print(format_table(report))
    for line in res.lines():
        print(line)
    print(f"outcomes: {res.outcomes}  ({res.wall_s:.1f}s)")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({**asdict(report), "outcomes": res.outcomes, "wall_s": res.wall_s,
                       "n": args.n, "temperature": temperature, "eval": res.to_json(),
                       "model": args.model, "problems_file": args.problems}, fh, indent=2)
    return 0
