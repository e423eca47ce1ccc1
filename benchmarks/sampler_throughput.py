"""Sampler overhead: `Sampler.generate` (per-token log-probs of the raw policy, character
offsets, stop strings, typed Sample records) against a plain `model.generate` sampling the same
prompts with the same temperature, top-p, batch size and number of new tokens, in one process.

    python benchmarks/sampler_throughput.py [--problems 32] [--n 4] [--new-tokens 96] [--repeats 3]

The model is the tiny model's architecture with random weights (nothing is downloaded), so
rows almost never end early and both sides generate the same number of tokens; the figure is
the ratio of wall times (median of the repeats). Target: under 10% overhead.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", type=int, default=32)
    ap.add_argument("--n", type=int, default=4, help="samples per problem")
    ap.add_argument("--new-tokens", type=int, default=96)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from actors.sampler import Sampler, SamplerSettings
    from learner.tiny_model import TinyModelSpec, build_tiny_model
    from problems.prompts import build_prompt
    from problems.synth import generate_suite

    torch.set_num_threads(args.threads)
    problems = [p for p in generate_suite(400, 0)][: args.problems]
    folder = tempfile.mkdtemp(prefix="rltf-sampler-bench-")
    build_tiny_model(generate_suite(400, 0), folder, TinyModelSpec())
    settings = SamplerSettings(n=args.n, include_greedy=False, temperature=0.8, top_p=0.95,
                               max_new_tokens=args.new_tokens, batch_size=args.batch_size,
                               stop=(), stop_whole_program=())
    sampler = Sampler(folder, seed=0)

    tok = AutoTokenizer.from_pretrained(folder)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    texts = [build_prompt(p).text for p in problems for _ in range(args.n)]
    texts.sort(key=lambda t: len(tok(t)["input_ids"]))  # as the sampler groups rows

    def plain() -> int:
        made = 0
        for i in range(0, len(texts), args.batch_size):
            enc = tok(texts[i:i + args.batch_size], return_tensors="pt", padding=True,
                      add_special_tokens=False)
            with torch.no_grad():
                out = model.generate(**enc, do_sample=True, temperature=0.8, top_p=0.95,
                                     top_k=0, max_new_tokens=args.new_tokens,
                                     pad_token_id=tok.pad_token_id)
            made += (out.shape[1] - enc["input_ids"].shape[1]) * out.shape[0]
        return made

    def ours() -> int:
        samples = sampler.generate(problems, settings)
        return sum(len(s.token_ids) for s in samples)

    plain()  # warm-up of both paths
    ours()
    times = {"model.generate": [], "Sampler.generate": []}
    tokens = {}
    for _ in range(args.repeats):
        for name, fn in (("model.generate", plain), ("Sampler.generate", ours)):
            t0 = time.perf_counter()
            tokens[name] = fn()
            times[name].append(time.perf_counter() - t0)
    base = statistics.median(times["model.generate"])
    mine = statistics.median(times["Sampler.generate"])
    print(f"{len(texts)} sequences x {args.new_tokens} new tokens, batch {args.batch_size}, "
          f"{args.threads} thread(s), median of {args.repeats}")
    for name in times:
        t = statistics.median(times[name])
        print(f"  {name:<18} {t:7.2f} s   {tokens[name] / t:8.0f} tokens/s "
              f"({tokens[name]} tokens)")
    overhead = mine / base - 1
    print(f"Sampler overhead vs model.generate: {overhead * 100:+.1f}% "
          f"(target < 10%: {'met' if overhead < 0.10 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
