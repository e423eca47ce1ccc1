"""Sampler overhead: `Sampler.generate` (per-token log-probs of the raw policy, character
offsets, stop strings, typed Sample records) against a plain `model.generate` sampling the same
prompts with the same temperature, top-p, batch size and number of new tokens, in one process.

    python benchmarks/sampler_throughput.py [--problems 32] [--n 4] [--new-tokens 96] [--repeats 3]

The model is the tiny model's architecture with random weights (nothing is downloaded), so
rows almost never end early and both sides generate the same number of tokens; the figure is
the ratio of wall times (median of the repeats). Target: under 10% overhead.

    python benchmarks/sampler_throughput.py --prefill [--model DIR] [--repeats 3]

Prompt sharing and the fused GELU instead: CPU seconds (time.process_time, so that other
processes on a shared machine count less) per program of `Sampler.generate` at the evaluation
shape (n=10 + greedy at temperature 0.6, 24 problems in a batch of 264 rows and 48 in one of
528) and the training shape (4 + greedy at 0.8, 8 problems per call, 32 rows a batch), each
with max_new_tokens 96 on the held-out problems of the built-in suite. Three columns, as
ratios to the first: every row prefilling its own prompt with GPT-2's "gelu_new" (the sampler
before prefix sharing), each distinct prompt prefilled once, and that plus the fused
"gelu_pytorch_tanh" that newly built tiny models use. --model: a GPT-2 folder (e.g. the warm
tiny model of a run, whose completions end early as real ones do); it is copied, not written.
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
    ap.add_argument("--prefill", action="store_true",
                    help="measure prompt sharing and the fused GELU instead")
    ap.add_argument("--model", default=None, help="GPT-2 folder for --prefill")
    args = ap.parse_args(argv)
    if args.prefill:
        return prefill(args)

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


def prefill(args) -> int:
    import json
    import shutil

    import torch

    from actors.sampler import Sampler, SamplerSettings
    from learner.tiny_model import TinyModelSpec, build_tiny_model
    from problems.synth import generate_suite

    torch.set_num_threads(args.threads)
    suite = generate_suite(1200, 0)
    held = [p for p in suite if p.split == "heldout"]
    tmp = Path(tempfile.mkdtemp(prefix="rltf-prefill-bench-"))
    source = args.model or build_tiny_model(suite, tmp / "built", TinyModelSpec())
    samplers = {}
    for act in ("gelu_new", "gelu_pytorch_tanh"):
        folder = shutil.copytree(source, tmp / act)
        config = json.loads((folder / "config.json").read_text())
        if config.get("model_type") != "gpt2":
            raise SystemExit(f"--prefill wants a GPT-2 folder; {source} holds "
                             f"{config.get('model_type')}")
        config["activation_function"] = act
        (folder / "config.json").write_text(json.dumps(config))
        samplers[act] = Sampler(str(folder), seed=0)
    variants = [("per row, gelu_new", "gelu_new", False),
                ("shared, gelu_new", "gelu_new", True),
                ("shared, fused gelu", "gelu_pytorch_tanh", True)]
    shapes = [("eval n=10+greedy, batch 264", held[:24], 24,
               SamplerSettings(n=10, temperature=0.6, max_new_tokens=96, batch_size=264)),
              ("eval n=10+greedy, batch 528", held[:48], 48,
               SamplerSettings(n=10, temperature=0.6, max_new_tokens=96, batch_size=528)),
              ("train n=4+greedy, 8 a call", held[:24], 8,
               SamplerSettings(n=4, temperature=0.8, max_new_tokens=96, batch_size=32))]
    shutil.rmtree(tmp / "built", ignore_errors=True)
    print(f"model {source}; CPU s per program (median of {args.repeats}), "
          f"{args.threads} thread(s)")
    print(f"  {'shape':<30}" + "".join(f"{name:>22}" for name, _, _ in variants))
    for label, problems, per_call, settings in shapes:
        for act, _ in samplers.items():  # warm-up
            samplers[act].generate(problems[:2], settings)
        times: dict[str, list[float]] = {name: [] for name, _, _ in variants}
        made: dict[str, list] = {}
        for _ in range(args.repeats):
            for name, act, share in variants:
                sampler = samplers[act]
                sampler._share_prompts, sampler._calls = share, 0
                t0, out = time.process_time(), []
                for i in range(0, len(problems), per_call):
                    out += sampler.generate(problems[i:i + per_call], settings)
                times[name].append((time.process_time() - t0) / len(out))
                made[name] = out
        base = statistics.median(times[variants[0][0]])
        cells = [f"{statistics.median(times[n]):9.4f} s ({base / statistics.median(times[n]):4.2f}x)"
                 for n, _, _ in variants]
        ids = [[x.token_ids for x in made[n]] for n, _, _ in variants]
        print(f"  {label:<30}" + "".join(f"{c:>22}" for c in cells)
              + f"   sharing: {'same' if ids[0] == ids[1] else 'DIFFERENT'} tokens; fused"
              f" gelu: {'same' if ids[1] == ids[2] else 'other'} tokens "
              f"({sum(map(len, ids[2])) / sum(map(len, ids[1])):.3f}x as many)")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
