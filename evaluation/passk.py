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
