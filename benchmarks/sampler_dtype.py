"""How far a fresh sample's importance ratio is from 1 when the learner trains in bf16 and the
sampler generates in bf16 (sampler.dtype auto on GPUs) or in float32 (the baseline).

    python benchmarks/sampler_dtype.py [--samples 8] [--new-tokens 32]

For each tiny family (learner/tiny_model.py, tokenizer on the built-in suite) a bf16 copy of
the model plays the learner: it scores each sample's tokens with the learner's own forward pass
(collate + policy_logprobs). Prints the mean and largest |log pi_learner - log pi_sampler| over
the generated tokens for both sampler dtypes, and the ratio float32 / bfloat16. CPU only here;
on a GPU add --device cuda.
"""

from __future__ import annotations

import argparse
import tempfile

import torch


def deviation(path: str, dtype: str, learner, problems, args) -> tuple[float, float]:
    from actors.sampler import Sampler, SamplerSettings
    from learner.batch import collate
    from learner.loss import label_mask
    from learner.objectives import policy_logprobs

    sampler = Sampler(path, dtype=dtype, device=args.device, seed=1)
    out = [s for s in sampler.generate(problems, SamplerSettings(
        n=args.samples, include_greedy=False, max_new_tokens=args.new_tokens)) if s.token_ids]
    b = collate([s.prompt_token_ids for s in out], [s.token_ids for s in out],
                logprobs=[s.logprobs for s in out], pad_id=sampler.pad_id,
                encoder_decoder=sampler.encoder_decoder).to(args.device)
    with torch.no_grad():
        gap = (policy_logprobs(learner, b).float() - b.behaviour_logprobs).abs()
    mask = label_mask(b.labels)
    return float((gap * mask).sum() / mask.sum()), float((gap * mask).max())


def main() -> None:
    from learner.models import load_model
    from learner.tiny_model import FAMILIES, build_family, corpus
    from problems.synth import generate_suite

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(1)
    suite = generate_suite(60, 0)
    problems = suite[:6]
    with tempfile.TemporaryDirectory() as tmp:
        for family in [f for f in FAMILIES if f != "gpt2"]:
            path = build_family(family, corpus(suite), f"{tmp}/{family}")
            learner = load_model(path, dtype="bfloat16").to(args.device).eval()
            bf = deviation(path, "bfloat16", learner, problems, args)
            fp = deviation(path, "float32", learner, problems, args)
            print(f"{family:7s} |log ratio| mean/max: bfloat16 sampler {bf[0]:.5f}/{bf[1]:.4f}"
                  f"  float32 sampler {fp[0]:.5f}/{fp[1]:.4f}  float32/bfloat16 mean "
                  f"{fp[0] / max(bf[0], 1e-12):.2f}x")


if __name__ == "__main__":
    main()
