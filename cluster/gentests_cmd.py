"""Command line of `rltf gen-tests` (see `problems.gentests.generate` for what it does).

It lives in `cluster/` because it loads the config tree and, with `--ray`, starts or joins a
Ray cluster and runs the sandboxes there (`cluster.gentests_sandboxes`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from problems.gentests.generate import DEFAULT_EXCLUDES, GenSettings, generate, summary


def parser() -> argparse.ArgumentParser:
    from problems.gentests import generate as pipeline

    d = GenSettings()
    ap = argparse.ArgumentParser(prog="rltf gen-tests",
                                 description=pipeline.__doc__.splitlines()[0])
    ap.add_argument("--source", action="append", required=True,
                    help="a .py file or a folder searched recursively (repeatable)")
    ap.add_argument("--out", required=True, help="problems JSONL to write")
    ap.add_argument("--hf-out", default=None,
                    help="also write the problems as a Hugging Face datasets folder here")
    ap.add_argument("--report", default=None, help="write the report (JSON) here")
    ap.add_argument("--solutions-out", default=None,
                    help="also write the reference solutions as solutions JSONL (for rltf exec)")
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--per-function", type=int, default=d.per_function,
                    help="most tests per problem")
    ap.add_argument("--pool-factor", type=int, default=d.pool_factor,
                    help="inputs tried per test kept")
    ap.add_argument("--min-tests", type=int, default=d.min_tests,
                    help="fewest tests a problem may keep")
    ap.add_argument("--allow-bare", action="store_true",
                    help="keep functions without a docstring (their prompt is the def line)")
    ap.add_argument("--min-mutation-score", type=float, default=d.min_mutation_score,
                    help="drop problems whose tests reject a smaller share of mutants (0-1)")
    ap.add_argument("--max-mutants", type=int, default=d.max_mutants,
                    help="mutants drawn per function")
    ap.add_argument("--guide-fraction", type=float, default=d.guide_fraction,
                    help="share of the mutants that steer the choice of tests (0-1)")
    ap.add_argument("--no-infer", action="store_true",
                    help="require annotations: no other type sources, no probing")
    ap.add_argument("--no-probe", action="store_true",
                    help="no runtime probing: parameters no static source types are unknown")
    ap.add_argument("--workers", type=int, default=None,
                    help="sandboxes (executor.workers; default: the config's, 2)")
    ap.add_argument("--ray", action="store_true",
                    help="run the sandboxes as Ray actors (cluster.address, or a local Ray)")
    ap.add_argument("--config", default=None, help="YAML config (its executor and cluster "
                    "sections apply)")
    ap.add_argument("--time-limit", type=float, default=d.time_limit_s, help="seconds per input")
    ap.add_argument("--chunk-size", type=int, default=d.chunk_size,
                    help="functions per chunk (the unit saved for resuming)")
    ap.add_argument("--work-dir", default=None,
                    help="where finished chunks are kept for resuming (default: OUT.parts)")
    ap.add_argument("--fresh", action="store_true", help="ignore finished chunks: start over")
    ap.add_argument("--exclude", action="append", default=None,
                    help="glob of paths below a source to skip (repeatable; default: "
                    f"{' '.join(DEFAULT_EXCLUDES)})")
    ap.add_argument("--allow-import", action="append", default=[],
                    help="a top-level package standalone programs may import besides the stdlib")
    ap.add_argument("--isolation", default=None, choices=("auto", "strict", "minimal"),
                    help="sandbox isolation (executor.isolation)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N candidates")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    ap.add_argument("overrides", nargs="*", help="config overrides, section.key=value")
    return ap


def settings(args) -> GenSettings:
    return GenSettings(
        seed=args.seed, per_function=args.per_function, pool_factor=args.pool_factor,
        min_tests=args.min_tests, infer_types=not args.no_infer,
        probe=not (args.no_infer or args.no_probe), allow_bare=args.allow_bare,
        extra_imports=frozenset(args.allow_import), time_limit_s=args.time_limit,
        max_mutants=args.max_mutants, guide_fraction=args.guide_fraction,
        min_mutation_score=args.min_mutation_score, chunk_size=args.chunk_size,
        limit=args.limit)


def _check(args) -> str | None:
    for src in args.source:
        if not Path(src).exists():
            return f"--source {src} does not exist"
    if not 0 <= args.min_mutation_score <= 1:
        return f"--min-mutation-score must be within 0 and 1 (got {args.min_mutation_score})"
    if not 0 <= args.guide_fraction <= 1:
        return f"--guide-fraction must be within 0 and 1 (got {args.guide_fraction})"
    for name in ("per_function", "pool_factor", "min_tests", "chunk_size"):
        if getattr(args, name) < 1:
            return f"--{name.replace('_', '-')} must be at least 1"
    if args.min_tests > args.per_function:
        return f"--min-tests ({args.min_tests}) exceeds --per-function ({args.per_function})"
    return None


def main(argv: list[str] | None = None) -> int:
    from core.config_reading import ConfigError, load_config

    args = parser().parse_args(argv)
    problem = _check(args)
    if problem:
        print(f"rltf gen-tests: {problem}", file=sys.stderr)
        return 2
    overrides = list(args.overrides)
    if args.workers is not None:
        overrides.append(f"executor.workers={args.workers}")
    if args.isolation is not None:
        overrides.append(f"executor.isolation={args.isolation}")
    try:
        cfg = load_config(args.config, overrides)
    except ConfigError as err:
        print(f"rltf gen-tests: {err}", file=sys.stderr)
        return 2
    st = settings(args)
    work = args.work_dir or f"{args.out}.parts"
    ray_started, sandboxes = False, None
    if args.ray:
        from cluster.gentests_sandboxes import RaySandboxes
        from cluster.train_cmd import start_ray

        ray_started, sandboxes = start_ray(cfg), RaySandboxes
    bar = None
    if not args.quiet:
        from tqdm import tqdm

        bar = tqdm(unit="fn", file=sys.stderr, desc="functions", smoothing=0.1)
    from problems.gentests.resume import WorkDirMismatch

    try:
        problems, report = generate(args.source, st, tuple(args.exclude or DEFAULT_EXCLUDES),
                                    cfg.executor, sandboxes, work, args.fresh,
                                    progress=bar.update if bar is not None else None)
    except WorkDirMismatch as err:
        print(f"rltf gen-tests: {err}", file=sys.stderr)
        return 2
    finally:
        if bar is not None:
            bar.close()
        if ray_started:
            import ray

            ray.shutdown()
    return _write(args, argv, problems, report)


def _write(args, argv, problems, report) -> int:
    from core.records import Solution, write_jsonl

    write_jsonl(args.out, problems)
    if args.hf_out:
        from problems.gentests.dataset import save_hf

        save_hf(problems, args.hf_out)
    if args.solutions_out:
        write_jsonl(args.solutions_out, [Solution(task_id=p.task_id, completion=p.solutions[0],
                                                  sample_id="reference") for p in problems])
    s = summary(report, problems)
    if args.report:
        Path(args.report).parent.mkdir(parents=True, exist_ok=True)
        with open(args.report, "w", encoding="utf-8") as fh:
            json.dump({**s, "command": ["rltf", "gen-tests", *(argv or sys.argv[1:])],
                       "dropped_functions": report.dropped_functions,
                       "type_sources": report.type_sources}, fh, indent=1)
    share = s["kept_share_of_functions_with_params"]
    print(f"found {s['functions_found']} functions ({s['functions_with_params']} with "
          f"parameters) in {s['files_scanned']} files; kept {s['kept']} problems "
          f"({s['tests_total']} tests{f', {share:.0%} of those with parameters' if share else ''})"
          f" in {s['timings_s']['total']}s")
    if s["kept_by_type_source"]:
        print("  kept, by type source: " + ", ".join(
            f"{k} {v}" for k, v in s["kept_by_type_source"].items()))
    if s["mutation_score"]["mean"] is not None:
        print(f"  mutation score: mean {s['mutation_score']['mean']:.3f} "
              f"({s['mutation_score']['killed']}/{s['mutation_score']['mutants']} mutants)")
    for reason, n in s["dropped"].items():
        print(f"  dropped {n:6d}  {reason}")
    if report.counts.get("chunks_resumed"):
        print(f"  resumed {report.counts['chunks_resumed']} finished chunks from the work folder")
    print(f"wrote {args.out}" + (f" and {args.hf_out}" if args.hf_out else ""))
    return 0
