"""What a training run writes: metrics.jsonl, TensorBoard events, console lines, and at the end
report.md with PNG plots.

    log = RunLog(run_dir)
    log.step(12, {"reward/mean": 0.1, "loss/rl": 0.5, ...})   # one JSON line + TensorBoard
    log.close()
    write_report(run_dir, summary)                          # report.md + plots/*.png

Metric names are `group/name`; the report plots each group it knows (reward, outcomes,
pass@1, losses, throughput, staleness) from metrics.jsonl alone, so it can be rebuilt later.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any


class RunLog:
    def __init__(self, run_dir: str | Path, tensorboard: bool = True, console: bool = True):
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.dir / "metrics.jsonl", "a", encoding="utf-8")
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.dir / "tensorboard"))
            except ImportError:  # tensorboard is optional at run time
                self._tb = None
        self.console = console
        self.t0 = time.time()

    def step(self, step: int, metrics: dict[str, Any]) -> None:
        row = {"step": step, "time_s": round(time.time() - self.t0, 3)}
        for k, v in metrics.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                row[k] = float(v) if math.isfinite(float(v)) else None
            else:
                row[k] = v
        self._fh.write(json.dumps(row) + "\n")
        self._fh.flush()
        if self._tb is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, float):
                    self._tb.add_scalar(k, v, step)

    def print(self, text: str) -> None:
        if self.console:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        self._fh.close()
        if self._tb is not None:
            self._tb.close()


def read_metrics(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    rows = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if line:
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
    return rows


# (file name, title, metric-name prefixes to draw)
PLOTS = [
    ("reward.png", "Reward (mean per step)", ["reward/"]),
    ("outcomes.png", "Outcome mix of judged samples", ["outcome/"]),
    ("pass_at_1.png", "Validation and test pass@1", ["eval/pass@1", "test/pass@1"]),
    ("losses.png", "Losses", ["loss/"]),
    ("throughput.png", "Throughput", ["throughput/"]),
    ("staleness.png", "Staleness (policy versions)", ["staleness/", "buffer/mean_age"]),
]


def _series(rows: list[dict], prefixes: list[str]) -> dict[str, tuple[list, list]]:
    out: dict[str, tuple[list, list]] = {}
    for r in rows:
        for k, v in r.items():
            if any(k.startswith(p) for p in prefixes) and isinstance(v, (int, float)):
                xs, ys = out.setdefault(k, ([], []))
                xs.append(r["step"])
                ys.append(v)
    return out


SLICES = {"all": "every held-out problem",
          "reference": "families trained with reference solutions",
          "tests": "families seen only through unit tests (no reference in training)"}


def evaluation_summary(cfg, figures: dict[str, dict[int, dict]], has_val: bool) -> dict:
    """What was measured on which split, first and last evaluation, for summary.json."""
    t = cfg.train
    out: dict[str, Any] = {
        "samples_per_problem": t.eval_samples, "temperature": t.eval_temperature,
        "greedy": t.eval_greedy,
        "pass@1": "unbiased estimate c/n per problem, mean over problems" if t.eval_samples
        else "the greedy program per problem",
        "ci": "95%, normal approximation over per-problem pass rates (mean +- 1.96 sd/sqrt(m))",
        "slices": SLICES,
        "validation": "validation split" if has_val else "the test split (no validation "
        "split was given)",
    }
    for split in ("test", "val"):
        steps = sorted(figures.get(split, {}))
        if steps:
            out[split] = {"before_step": steps[0], "after_step": steps[-1],
                          "before": figures[split][steps[0]],
                          "after": figures[split][steps[-1]]}
    return out


def _iv(d: dict | None) -> str:
    if not d:
        return "-"
    return f"{d['mean'] * 100:.1f}% [{d['lo'] * 100:.1f}, {d['hi'] * 100:.1f}]"


def eval_table(ev: dict, split: str) -> list[str]:
    """Markdown-free console/report lines: per slice, before -> after, with 95% CIs."""
    if split not in ev:
        return []
    e = ev[split]
    n, temp = ev["samples_per_problem"], ev["temperature"]
    what = f"pass@1 from {n} samples at T={temp:g}" if n else "greedy pass@1"
    name = {"test": "test split (only reported)",
            "val": f"validation split ({ev['validation']}; it chose the settings)"}[split]
    lines = [f"{name}, steps {e['before_step']} -> {e['after_step']}, {what}, 95% CI:"]
    for sl, after in e["after"].items():
        before = e["before"].get(sl, {})
        line = (f"  {sl:<10}{after['problems']:>4} problems  "
                f"{_iv(before.get('pass@1'))} -> {_iv(after.get('pass@1'))}")
        if ev["greedy"] and n:
            line += f"; greedy {_iv(before.get('greedy'))} -> {_iv(after.get('greedy'))}"
        lines.append(line + f"  ({SLICES.get(sl, sl)})")
    return lines


def closing_lines(summary: dict) -> list[str]:
    ev = summary.get("evaluation") or {}
    return eval_table(ev, "test") + eval_table(ev, "val")


def write_report(run_dir: str | Path, summary: dict[str, Any]) -> Path:
    """report.md and plots/*.png from metrics.jsonl and the run summary."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    rows = read_metrics(run_dir)
    plots_dir = run_dir / "plots"
    plots_dir.mkdir(exist_ok=True)
    made = []
    for fname, title, prefixes in PLOTS:
        series = _series(rows, prefixes)
        if not series:
            continue
        fig, ax = plt.subplots(figsize=(7, 3.5))
        for name, (xs, ys) in sorted(series.items()):
            ax.plot(xs, ys, label=name, marker="o" if len(xs) < 20 else None)
        ax.set_title(title)
        ax.set_xlabel("learner step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(plots_dir / fname, dpi=100)
        plt.close(fig)
        made.append((fname, title))
    lines = ["# rltf run report", "", "| | |", "|---|---|"]
    for k, v in summary.items():
        if isinstance(v, (dict, list)):
            continue
        if isinstance(v, float):
            v = f"{v:.4g}"
        lines.append(f"| {k} | {v} |")
    lines.append("")
    ev = summary.get("evaluation")
    if ev:
        lines += ["## Held-out evaluation", "", "```"] + closing_lines(summary) + ["```", ""]
    curve = summary.get("warm_start_curve")
    if curve:
        keys = [k for k in curve[0] if k != "step"]
        lines += ["## Warm start: validation curve", "",
                  "| step | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
        for pt in curve:
            lines.append(f"| {pt['step']} | " + " | ".join(
                "-" if pt.get(k) is None else f"{pt[k]:.3f}" for k in keys) + " |")
        lines.append("")
    for fname, title in made:
        lines += [f"## {title}", "", f"![{title}](plots/{fname})", ""]
    path = run_dir / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
