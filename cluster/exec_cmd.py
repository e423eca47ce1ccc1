"""`rltf exec`: judge a solutions file against a problems file and write results JSONL.

    rltf exec --problems P.jsonl --solutions S.jsonl --out R.jsonl [--workers N] [--ray]
              [--config FILE] [executor.key=value ...]

Prints a progress bar and a closing summary: counts by outcome, programs per second and the
isolation tier the sandbox reached. Malformed lines of either input are reported with file and
line number and skipped; a solution whose task is unknown is reported too. Results come out in
the order of the solutions file.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time

from core.records import OUTCOMES, Problem, Solution, read_jsonl, write_jsonl


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--problems", required=True, help="problems JSONL")
    ap.add_argument("--solutions", required=True, help="solutions JSONL")
    ap.add_argument("--out", required=True, help="results JSONL to write")
    ap.add_argument("--workers", type=int, default=None, help="executor workers (default: config)")
    ap.add_argument("--ray", action="store_true", help="run the workers as Ray actors")
    ap.add_argument("--config", default=None, help="YAML config file")
    ap.add_argument("--summary-json", default=None, help="also write the summary as JSON here")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    ap.add_argument("overrides", nargs="*", help="config overrides, section.key=value")


def _read_inputs(problems_path: str, solutions_path: str) -> tuple[list, int, list]:
    """(problem, solution) pairs, the number of malformed lines, the solutions whose task is
    unknown; each skipped line or solution is reported on stderr."""
    problems, bad_p = read_jsonl(problems_path, Problem)
    solutions, bad_s = read_jsonl(solutions_path, Solution)
    for bad in bad_p + bad_s:
        print(f"skipped {bad}", file=sys.stderr)
    by_id = {p.task_id: p for p in problems}
    pairs, unknown = [], []
    for s in solutions:
        if s.task_id in by_id:
            pairs.append((by_id[s.task_id], s))
        else:
            unknown.append(s)
    for s in unknown:
        print(f"skipped solution {s.sample_id!r}: unknown task_id {s.task_id!r}", file=sys.stderr)
    return pairs, len(bad_p) + len(bad_s), unknown


def run(args: argparse.Namespace) -> int:
    from core.config_reading import load_config
    from cluster.executor_pool import make_pool

    overrides = list(args.overrides)
    if args.workers is not None:
        overrides.append(f"executor.workers={args.workers}")
    cfg = load_config(args.config, overrides)
    ray_started = False
    if args.ray:
        import ray

        if not ray.is_initialized():
            ray.init(_node_ip_address="127.0.0.1", include_dashboard=False,
                     num_cpus=max(cfg.executor.workers, 1), log_to_driver=False)
            ray_started = True
    t0 = time.monotonic()
    results: dict[int, object] = {}
    try:
        # The sandboxes start while the files are read.
        with make_pool(cfg.executor, use_ray=args.ray) as pool:
            pairs, bad, unknown = _read_inputs(args.problems, args.solutions)
            if not pairs:
                print("nothing to run: no solution matches a problem", file=sys.stderr)
                return 2
            bar = None
            if not args.quiet:
                from tqdm import tqdm

                bar = tqdm(total=len(pairs), unit="prog", file=sys.stderr, smoothing=0.1)
            for idx, res in pool.imap(pairs):
                results[idx] = res
                if bar is not None:
                    bar.update(1)
            if bar is not None:
                bar.close()
            tier = pool.isolation
    finally:
        if ray_started:
            import ray

            ray.shutdown()
    wall = time.monotonic() - t0
    ordered = [results[i] for i in range(len(pairs))]
    write_jsonl(args.out, ordered)
    counts = collections.Counter(r.outcome for r in ordered)
    summary = {
        "programs": len(ordered),
        "outcomes": {o: counts.get(o, 0) for o in OUTCOMES},
        "tests_passed": sum(r.passed for r in ordered),
        "tests_total": sum(r.total for r in ordered),
        "programs_per_s": len(ordered) / wall if wall > 0 else float("inf"),
        "wall_s": wall,
        "workers": cfg.executor.workers,
        "isolation": tier,
        "skipped_lines": bad,
        "unknown_task_ids": len(unknown),
    }
    print(format_summary(summary))
    if args.summary_json:
        with open(args.summary_json, "w") as fh:
            json.dump(summary, fh, indent=2)
    return 0


def format_summary(s: dict) -> str:
    lines = [f"judged {s['programs']} programs in {s['wall_s']:.2f}s "
             f"({s['programs_per_s']:.1f} programs/s, {s['workers']} workers)"]
    lines.append("  " + "  ".join(f"{k}={v}" for k, v in s["outcomes"].items() if v)
                 + f"  | tests passed {s['tests_passed']}/{s['tests_total']}")
    lines.append(f"  sandbox: {s['isolation']}")
    if s["skipped_lines"] or s["unknown_task_ids"]:
        lines.append(f"  skipped: {s['skipped_lines']} malformed lines, "
                     f"{s['unknown_task_ids']} solutions with unknown task_id")
    return "\n".join(lines)
