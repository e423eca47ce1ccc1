"""The paper's feedback ablation on the embedded default, against a supervised-only control,
over K seeds, with confidence intervals and paired differences.

    python benchmarks/ablation.py --seeds 3 [--max-steps 120] [--variants all] [--split test]
                                  [--against VARIANT] [key=value ...]

Variants (each a separate `rltf train` run with its own local Ray instance, in sequence):
supervised-only control, RLTF (coarse + adaptive + fine-grained), coarse only, coarse +
adaptive, coarse + fine-grained, RL without the supervised term (with all three feedbacks;
with coarse + fine-grained, without and with a KL penalty towards the warm start), and
actor-critic (value critic, all three feedbacks).
Extra key=value arguments go to every run; runs whose summary.json exists are reused (delete
the folder, or pass --fresh, to run one again).

Same budget: every variant and seed starts from one cached warm start (made with
--warm-seed; the seeds vary the training run: problem order, sampling, supervised batches)
and runs the same number of learner steps; every step trains on `learner.batch_size` sampled
programs judged by the unit tests (samplers and executors run identically in every variant,
the control included) plus, where the supervised term is on, as many reference programs.
The control sets every reward to 0, so its policy-gradient term is 0 and each of its steps is
a supervised step on the same reference programs; RL without the supervised term sets
learner.sl_weight=0. Samples generated and wall time are reported per variant (wall time is
noisy on a shared machine; compare on the equal step and sample budget). With `--split test`
(the default) the runs skip the validation evaluations (train.eval_val=false) and the table
reports the test split: that is the report, made once the settings are fixed. With `--split
val` the runs evaluate the validation split before and after training and the table reports
it: that is how settings are chosen (extra key=value arguments, e.g. learner.lr=3e-4, apply to
every variant), without looking at the test split.

Figures: test pass@1 (the unbiased estimate c/n from the evaluation's n samples per problem at
its temperature), per slice (reference families, tests-only families), after training. For
a variant, the per-problem value is averaged over the seeds first; the interval is the normal
approximation over problems of those averages (`evaluation.passk.normal_ci`). The paired
difference against the control is taken per problem and seed (same problems, same warm
start), averaged over seeds per problem, with the same interval over problems: it covers the
evaluation noise (which problems, which samples) for these K training runs, not the
run-to-run noise of training. The t interval over the K per-seed differences (t(0.975, K-1))
covers the latter and is printed beside it; with K = 3 it is wide. `--against VARIANT` takes
the paired differences against another variant instead of the control (to choose between two
settings on the validation split, e.g. `--split val --variants "RLTF (all three),coarse+fine"
--against "RLTF (all three)"`).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from evaluation.passk import normal_ci, t_ci  # noqa: E402

CONTROL = "supervised control"
VARIANTS = {
    # every reward 0: the policy-gradient term is 0 and only the supervised term on
    # reference programs trains the model; what RL adds is the difference
    CONTROL: ["reward.pass_reward=0", "reward.fail_reward=0", "reward.runtime_error_reward=0",
              "reward.syntax_error_reward=0", "reward.adaptive=false",
              "reward.fine_grained=false"],
    "RLTF (all three)": ["reward.adaptive=true", "reward.fine_grained=true"],
    "coarse": ["reward.adaptive=false", "reward.fine_grained=false"],
    "coarse+adaptive": ["reward.adaptive=true", "reward.fine_grained=false"],
    "coarse+fine": ["reward.adaptive=false", "reward.fine_grained=true"],
    "RL only (no supervised term)": ["reward.adaptive=true", "reward.fine_grained=true",
                                     "learner.sl_weight=0"],
    "RL only coarse+fine (no supervised term)": ["reward.adaptive=false",
                                                 "reward.fine_grained=true",
                                                 "learner.sl_weight=0"],
    # the same with a KL penalty towards the warm start, chosen on the validation split over
    # no penalty (learner.kl_coef 0.1 against 0; the closing note of that session has both)
    "RL only coarse+fine with KL (no supervised term)": ["reward.adaptive=false",
                                                         "reward.fine_grained=true",
                                                         "learner.sl_weight=0",
                                                         "learner.kl_coef=0.1"],
    "actor-critic (all three)": ["algo=actor_critic", "reward.adaptive=true",
                                 "reward.fine_grained=true", "reward.baseline=none"],
}
# --variants takes a comma-separated list of these names
assert not any("," in name for name in VARIANTS)
SLICES = ("all", "reference", "tests")


def run_name(name: str, seed: int) -> str:
    safe = "".join(c if c.isalnum() or c in "+-" else "_" for c in name).strip("_")
    return f"{safe}-seed{seed}"


def load_eval(run: Path, step: int, split: str = "test") -> dict[str, dict]:
    data = json.loads((run / "eval" / f"{split}-step-{step:06d}.json").read_text())
    return data["problems"]


def rates(problems: dict[str, dict], what: str, slice_: str) -> dict[str, float]:
    out = {}
    for tid, r in problems.items():
        if slice_ != "all" and r["slice"] != slice_:
            continue
        if what == "pass@1":
            out[tid] = r["c"] / r["n"]
        elif r["greedy"] is not None:
            out[tid] = float(r["greedy"])
    return out


def seed_mean(per_seed: list[dict[str, float]]) -> dict[str, float]:
    """Per problem, the mean over seeds (every seed has the same problems)."""
    keys = set(per_seed[0])
    if any(set(d) != keys for d in per_seed):
        raise ValueError("runs were evaluated on different test problems; use one data.synth_seed")
    return {k: sum(d[k] for d in per_seed) / len(per_seed) for k in sorted(keys)}


def analyse(results: dict[str, dict[int, dict]], before: dict[int, dict],
            against: str = CONTROL) -> dict:
    """results: variant -> seed -> per-problem test record after training. Paired differences
    are taken against the variant `against` (key `vs_ref`; the control unless told) and
    against the warm start (`vs_warm`)."""
    out: dict = {}
    seeds = sorted(before)
    variants = {"warm start": before, **results}
    for name, by_seed in variants.items():
        row: dict = {}
        for what in ("pass@1", "greedy"):
            for sl in SLICES:
                per = [rates(by_seed[s], what, sl) for s in seeds]
                if not per[0]:
                    continue
                row[f"{what}/{sl}"] = normal_ci(seed_mean(per).values()).as_dict()
                for ref_name, ref in (("ref", results.get(against)), ("warm", before)):
                    if ref is None or by_seed is ref:
                        continue
                    base = [rates(ref[s], what, sl) for s in seeds]
                    diff = [{k: a[k] - b[k] for k in a} for a, b in zip(per, base)]
                    row[f"{what}/{sl}/vs_{ref_name}"] = normal_ci(
                        seed_mean(diff).values()).as_dict()
                    if len(seeds) > 1:
                        row[f"{what}/{sl}/vs_{ref_name}_seeds"] = t_ci(
                            [sum(d.values()) / len(d) for d in diff]).as_dict()
        out[name] = row
    return out


def _c(d: dict | None, sign: bool = False) -> str:
    if not d:
        return "-"
    f = "+.1f" if sign else ".1f"
    return f"{d['mean'] * 100:{f}} [{d['lo'] * 100:{f}}, {d['hi'] * 100:{f}}]"


def table(stats: dict, walls: dict, samples: dict, against: str = CONTROL) -> list[str]:
    ref = "control" if against == CONTROL else against
    head = ["variant", "all", "reference", "tests-only", "greedy all",
            f"Δ all vs {ref}", f"Δ tests-only vs {ref}", f"Δ all vs {ref}, seeds (t)",
            "Δ all vs warm start", "wall s", "samples"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in stats.items():
        cells = [name, _c(row.get("pass@1/all")), _c(row.get("pass@1/reference")),
                 _c(row.get("pass@1/tests")), _c(row.get("greedy/all")),
                 _c(row.get("pass@1/all/vs_ref"), True),
                 _c(row.get("pass@1/tests/vs_ref"), True),
                 _c(row.get("pass@1/all/vs_ref_seeds"), True),
                 _c(row.get("pass@1/all/vs_warm"), True),
                 f"{walls[name]:.0f}" if name in walls else "-",
                 f"{samples[name]:.0f}" if name in samples else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3, help="K: seeds first-seed .. +K-1")
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--max-steps", type=int, default=None,
                    help="learner steps (default: the preset's train.max_steps)")
    ap.add_argument("--variants", default="all",
                    help="comma-separated names from: " + "; ".join(VARIANTS))
    ap.add_argument("--warm-seed", type=int, default=0,
                    help="seed of the one warm start every run starts from")
    ap.add_argument("--split", choices=("test", "val"), default="test",
                    help="the split the table reports: test (the report) or val (to choose "
                    "settings on)")
    ap.add_argument("--against", default=CONTROL,
                    help="the variant the paired differences are taken against (default: the "
                    "control); it must be among --variants")
    ap.add_argument("--out", default="runs/ablation")
    ap.add_argument("--fresh", action="store_true", help="run again even where a run exists")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args(argv)
    names = list(VARIANTS) if args.variants == "all" else [
        v.strip() for v in args.variants.split(",")]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        ap.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    if args.against != CONTROL and args.against not in names:
        ap.error(f"--against {args.against!r} is not among the variants run: {names}")
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    out = Path(args.out)
    results: dict[str, dict[int, dict]] = {n: {} for n in names}
    before: dict[int, dict] = {}
    walls: dict[str, list[float]] = {n: [] for n in names}
    samples: dict[str, list[float]] = {n: [] for n in names}
    steps_seen = set()
    # validation only before and after training: eval_every beyond any run's length
    split_overrides = ["train.eval_val=false"] if args.split == "test" else [
        "train.eval_val=true", "train.eval_every=1000000"]
    for seed in seeds:  # seed-major: every finished seed is a complete paired set
        for name in names:
            run = out / run_name(name, seed)
            if args.fresh or not (run / "summary.json").exists():
                steps = [] if args.max_steps is None else ["--max-steps", str(args.max_steps)]
                cmd = [sys.executable, "-m", "cluster.cli", "train", "--run-dir", str(run),
                       *steps, f"seed={seed}",
                       f"model.warm_start_seed={args.warm_seed}", *split_overrides,
                       *VARIANTS[name], *args.overrides]
                t0 = time.time()
                proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
                if proc.returncode != 0:
                    print(f"{name} seed {seed}: failed\n{proc.stderr[-3000:]}", file=sys.stderr)
                    return 1
                print(f"{name} seed {seed}: done in {time.time() - t0:.0f}s", flush=True)
            s = json.loads((run / "summary.json").read_text())
            steps_seen.add(s["steps"])
            results[name][seed] = load_eval(run, s["steps"], args.split)
            before.setdefault(seed, load_eval(run, 0, args.split))
            walls[name].append(s["wall_s"])
            samples[name].append(s["samples_generated"])
            b, a = (rates(r, "pass@1", "all") for r in (before[seed], results[name][seed]))
            print(f"{name} seed {seed}: {args.split} pass@1 "
                  f"{sum(b.values()) / len(b) * 100:.1f}% -> "
                  f"{sum(a.values()) / len(a) * 100:.1f}% ({s['steps']} steps, "
                  f"{s['wall_s']:.0f}s)", flush=True)
    stats = analyse(results, before, args.against)
    mean = {n: sum(v) / len(v) for n, v in walls.items() if v}
    smean = {n: sum(v) / len(v) for n, v in samples.items() if v}
    first = next(iter(before.values()))
    m = {sl: len(rates(first, "pass@1", sl)) for sl in SLICES}
    lines = [f"{args.split} pass@1 in % (95% CI), {m['all']} problems "
             f"({m['reference']} reference, "
             f"{m['tests']} tests-only), seeds {seeds}, learner steps {sorted(steps_seen)}; "
             "Δ in points; the intervals are described in benchmarks/ablation.py", "",
             *table(stats, mean, smean, args.against)]
    print()
    print("\n".join(lines))
    out.mkdir(parents=True, exist_ok=True)
    (out / "ablation.md").write_text("\n".join(lines) + "\n")
    (out / "ablation.json").write_text(json.dumps(
        {"seeds": seeds, "split": args.split, "command": sys.argv, "against": args.against,
         "stats": stats,
         "wall_s": mean,
         "samples_generated": smean}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
