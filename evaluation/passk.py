"""The unbiased pass@k estimator (Chen et al., 2021) and per-group breakdowns.

For a problem with n samples of which c pass, the probability that at least one of k samples
drawn without replacement passes is

    pass@k = 1 - C(n - c, k) / C(n, k)

computed as a running product to stay exact for large n. The score of a set of problems is the
mean over problems. pass@k is undefined when k > n; such k are left out of the report.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples (of n, c correct) passes."""
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n (got n={n}, c={c})")
    if k < 1 or k > n:
        raise ValueError(f"need 1 <= k <= n (got n={n}, k={k})")
    if n - c < k:
        return 1.0
    # C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k / i)
    prob_all_fail = 1.0
    for i in range(n - c + 1, n + 1):
        prob_all_fail *= 1.0 - k / i
    return 1.0 - prob_all_fail


@dataclass
class PassAtKReport:
    ks: list[int]
    overall: dict[str, float]  # "pass@1" -> value
    problems: int
    samples: int
    by_group: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    per_problem: dict[str, dict[str, float]] = field(default_factory=dict)


def summarise(counts: dict[str, tuple[int, int]], ks: Iterable[int],
              groups: dict[str, dict[str, str]] | None = None) -> PassAtKReport:
    """counts: task_id -> (n, c). groups: group name -> {task_id: label} (e.g. "format")."""
    ks = sorted(set(ks))
    if not counts:
        raise ValueError("no problems to score")
    n_min = min(n for n, _ in counts.values())
    usable = [k for k in ks if k <= n_min]
    per: dict[str, dict[str, float]] = {}
    for tid, (n, c) in counts.items():
        per[tid] = {f"pass@{k}": pass_at_k(n, c, k) for k in usable}

    def mean_over(tids: list[str]) -> dict[str, float]:
        return {f"pass@{k}": sum(per[t][f"pass@{k}"] for t in tids) / len(tids) for k in usable}

    report = PassAtKReport(ks=usable, overall=mean_over(list(per)), problems=len(per),
                           samples=sum(n for n, _ in counts.values()), per_problem=per)
    for gname, labels in (groups or {}).items():
        buckets: dict[str, list[str]] = defaultdict(list)
        for tid in per:
            buckets[labels.get(tid) or "unknown"].append(tid)
        report.by_group[gname] = {lab: {**mean_over(t), "problems": len(t)}
                                  for lab, t in sorted(buckets.items())}
    return report


def format_table(report: PassAtKReport) -> str:
    cols = [f"pass@{k}" for k in report.ks]
    lines = [f"{'':24}" + "".join(f"{c:>10}" for c in cols) + f"{'problems':>10}"]
    lines.append(f"{'all':24}" + "".join(f"{report.overall[c] * 100:9.1f}%" for c in cols)
                 + f"{report.problems:>10}")
    for gname, buckets in report.by_group.items():
        for label, vals in buckets.items():
            name = f"{gname}={label}"[:24]
            lines.append(f"{name:24}" + "".join(f"{vals[c] * 100:9.1f}%" for c in cols)
                         + f"{int(vals['problems']):>10}")
    return "\n".join(lines)


# -- confidence intervals ------------------------------------------------------------------
# Two-sided 95% quantiles of Student's t, t(0.975, df), for df = 1..30 (beyond: the normal
# 1.96 is within 2%).
T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
        2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
        2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]
Z975 = 1.959964


def t975(df: int) -> float:
    if df < 1:
        raise ValueError(f"need at least 2 values for a t interval (df={df})")
    return T975[df - 1] if df <= len(T975) else Z975


@dataclass(frozen=True)
class Interval:
    """A mean with its 95% confidence interval [lo, hi] over `count` values."""

    mean: float
    lo: float
    hi: float
    count: int

    def as_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "lo": self.lo, "hi": self.hi, "count": self.count}

    def pct(self, sign: bool = False) -> str:
        f = "+.1f" if sign else ".1f"
        return f"{self.mean * 100:{f}}% [{self.lo * 100:{f}}, {self.hi * 100:{f}}]"


def _mean_sd(values: list[float]) -> tuple[float, float]:
    m = len(values)
    mean = sum(values) / m
    var = sum((v - mean) ** 2 for v in values) / (m - 1) if m > 1 else 0.0
    return mean, var ** 0.5


def normal_ci(values: Iterable[float]) -> Interval:
    """Mean of per-problem values (pass rates, or paired differences) with the normal
    approximation: mean +- 1.96 sd / sqrt(m), sd the sample standard deviation over the m
    problems. It treats the problems as drawn from a larger population of such problems and
    covers the noise of which problems and which samples were drawn; with m >= 200 the
    normal approximation of the mean is close. One problem gives a zero-width interval."""
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("no values for a confidence interval")
    mean, sd = _mean_sd(vals)
    half = Z975 * sd / len(vals) ** 0.5
    return Interval(mean, mean - half, mean + half, len(vals))


def t_ci(values: Iterable[float]) -> Interval:
    """Mean of a few values (e.g. one figure per seed) with Student's t: mean +- t(0.975,
    k - 1) sd / sqrt(k). It covers run-to-run noise (the seeds), but is wide for small k."""
    vals = [float(v) for v in values]
    mean, sd = _mean_sd(vals)
    half = t975(len(vals) - 1) * sd / len(vals) ** 0.5
    return Interval(mean, mean - half, mean + half, len(vals))
