"""The paper's feedback ablation on the embedded default: the same budget (learner steps, seed,
warm start) with coarse feedback only, coarse + adaptive, coarse + fine-grained, and all three,
plus actor-critic (value critic) with all three and a control with the supervised term only;
one table of held-out pass@1.

    python benchmarks/ablation.py [--max-steps 120] [--seeds 0] [--variants all] [key=value ...]

Each variant is a separate `rltf train` run (its own local Ray instance) in runs/ablation/;
extra key=value arguments go to every run. The warm-started tiny model is cached, so every
variant starts from the same weights.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

VARIANTS = {
    "coarse": ["reward.adaptive=false", "reward.fine_grained=false"],
    "coarse+adaptive": ["reward.adaptive=true", "reward.fine_grained=false"],
    "coarse+fine": ["reward.adaptive=false", "reward.fine_grained=true"],
    "all three": ["reward.adaptive=true", "reward.fine_grained=true"],
    "actor-critic (all three)": ["algo=actor_critic", "reward.adaptive=true",
                                 "reward.fine_grained=true", "reward.baseline=none"],
    # RL alone: no supervised term
    "all three, RL only": ["reward.adaptive=true", "reward.fine_grained=true",
                           "learner.sl_weight=0"],
    # control: every reward 0, so the policy-gradient term is 0 and only the supervised
    # term on reference solutions trains the model; what RL adds is the difference
    "supervised term only": ["reward.pass_reward=0", "reward.fail_reward=0",
                             "reward.runtime_error_reward=0", "reward.syntax_error_reward=0",
                             "reward.adaptive=false", "reward.fine_grained=false"],
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-steps", type=int, default=120)
    ap.add_argument("--seeds", default="0", help="comma-separated seeds")
    ap.add_argument("--variants", default="all",
                    help="comma-separated names from: " + ", ".join(VARIANTS))
    ap.add_argument("--out", default="runs/ablation")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args(argv)
    names = list(VARIANTS) if args.variants == "all" else [
        v.strip() for v in args.variants.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for name in names:
        for seed in seeds:
            run = Path(args.out) / f"{name.replace(' ', '_').replace('(', '').replace(')', '')}" \
                f"-seed{seed}"
            cmd = [sys.executable, "-m", "cluster.cli", "train", "--run-dir", str(run),
                   "--max-steps", str(args.max_steps), f"seed={seed}",
                   f"train.eval_every={args.max_steps}", *VARIANTS[name], *args.overrides]
            t0 = time.time()
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
            if proc.returncode != 0:
                print(f"{name} seed {seed}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
                return 1
            s = json.loads((run / "summary.json").read_text())
            rows.append((name, seed, s["pass_at_1_before"], s["pass_at_1_after"],
                         time.time() - t0, s.get("learner_busy_fraction", 0.0)))
            print(f"{name} seed {seed}: {s['pass_at_1_before'] * 100:.1f}% -> "
                  f"{s['pass_at_1_after'] * 100:.1f}% ({time.time() - t0:.0f}s)", flush=True)
    print()
    print(f"held-out pass@1, {args.max_steps} learner steps, seeds {args.seeds}")
    print(f"{'feedback':<28}{'before':>9}{'after':>9}{'change':>9}{'wall s':>9}")
    for name in names:
        mine = [r for r in rows if r[0] == name]
        before = sum(r[2] for r in mine) / len(mine)
        after = sum(r[3] for r in mine) / len(mine)
        wall = sum(r[4] for r in mine) / len(mine)
        print(f"{name:<28}{before * 100:>8.1f}%{after * 100:>8.1f}%"
              f"{(after - before) * 100:>+8.1f}{wall:>9.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
