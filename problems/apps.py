"""APPS (Hendrycks et al., 2021) as problems JSONL, from either of its two layouts.

    rltf data apps --source PATH_OR_NAME --split train|test --out F [--solutions-out S]
                   [--limit N] [--difficulty introductory|interview|competition]

`--source` is one of:

* the original directory layout: `<source>/<split>/<id>/question.txt`, `input_output.json`,
  and, where present, `solutions.json`, `metadata.json` (difficulty, url), `starter_code.py`;
* the Hugging Face (`codeparrot/apps`) layout, one object per problem with `problem_id`,
  `question`, `solutions` and `input_output` as JSON strings, `starter_code`, `difficulty`,
  `url`: a local JSON/JSONL file, or a folder of them (files whose name starts with the split
  name, e.g. `train.jsonl`, when there are any, else all), read with `datasets`' json loader;
* otherwise a dataset name on the Hugging Face hub, `datasets.load_dataset(name, split=...)`
  (needs a network).

A problem whose `input_output` has `fn_name` becomes a `call` problem (tests
`{"input": [args...], "output": value}`), any other a `stdio` problem (tests
`{"input": str, "output": str}`; an input or output given as a list of lines is joined with
newlines). Call-based outputs: APPS stores Codewars outputs wrapped in a one-element list
(`[false]` where the function returns `False`), and LeetCode outputs bare. A `call` test's
`output` is the value the function returns (docs/ARCHITECTURE.md, File formats), so when
every output of a problem is a one-element list, and the problem is not from LeetCode, each
output is unwrapped. (The executor also accepts a bare
value for a wrapped expected output, as APPS's harness does; unwrapping makes the data say what
it means, and rejects a program that returns `[False]` for `False`.)

Time limits: a record's own `time_limit` (seconds, or CodeContests' {"seconds", "nanos"})
where it has one; otherwise the limit comes from the references' measured time, and
references that do not pass are reported (`problems.time_limits`; `--time-limits keep`
skips that; `--time-refs` bounds the references run per problem).

The statement is the `prompt`; the reference programs go to `solutions`, and `--solutions-out`
also writes them as Solution records (`sample_id` "ref-<i>") for `rltf exec`. task_id is
`apps/<split>/<id>` with the id zero-padded to four digits.

A record that cannot be converted (a field that is not valid JSON, a missing statement, no
tests, an `input_output` of the wrong shape) is reported on standard error with its file and
line (or directory, or row) and the reason, and counted in the final summary line; it never
stops the others. The exit status is 0 when at least one problem was converted, else 1.

Reading records and reporting bad ones: problems.source_records (shared with problems.mbpp).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Iterator

from core.records import Problem
from problems import time_limits
from problems.source_records import (BadRecord, Row, Tally, hub_rows, json_field, json_rows,
                                     local_json_files, text_field, validated, write_outputs)

DIFFICULTIES = ("introductory", "interview", "competition")


def _read_text(path: str) -> str | None:
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8", errors="replace") as fh:
        return fh.read()


def directory_rows(split_dir: str) -> Iterator[Row]:
    """One record per problem directory of the original layout, in the Hugging Face layout's
    shape (file contents as strings, so both layouts are parsed by the same code)."""
    for name in sorted(os.listdir(split_dir)):
        d = os.path.join(split_dir, name)
        if not os.path.isdir(d):
            continue
        rec: dict[str, Any] = {"problem_id": name,
                               "question": _read_text(os.path.join(d, "question.txt")),
                               "input_output": _read_text(os.path.join(d, "input_output.json")),
                               "solutions": _read_text(os.path.join(d, "solutions.json")),
                               "starter_code": _read_text(os.path.join(d, "starter_code.py"))}
        meta = _read_text(os.path.join(d, "metadata.json"))
        if meta is not None:
            try:
                m = json.loads(meta)
                if not isinstance(m, dict):
                    raise ValueError("not a JSON object")
            except ValueError as err:
                yield Row(d, None, BadRecord("invalid JSON in metadata", str(err)))
                continue
            rec["difficulty"] = m.get("difficulty")
            rec["url"] = m.get("url")
        yield Row(d, rec)


def _stdio_text(value: Any, what: str) -> str:
    """A stdio input or output: a string, or a list of lines (joined, one newline each)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(x, str) for x in value):
        return "".join(x if x.endswith("\n") else x + "\n" for x in value)
    raise BadRecord("unparseable input_output",
                    f"{what} is a {type(value).__name__}, not a string or a list of lines")


def _outputs_wrapped(outputs: list, url: str | None) -> bool:
    """Whether a call-based problem's outputs follow APPS's one-element-list wrapping."""
    if url and "leetcode.com" in url:
        return False
    return all(isinstance(o, list) and len(o) == 1 for o in outputs)


def _problem_number(pid: Any) -> str:
    if isinstance(pid, bool) or pid is None:
        raise BadRecord("missing problem_id")
    if isinstance(pid, int) or (isinstance(pid, str) and pid.strip().isdigit()):
        return f"{int(pid):04d}"
    if isinstance(pid, str) and pid.strip():
        return pid.strip()
    raise BadRecord("missing problem_id")


def convert_apps(rec: dict, split: str) -> Problem:
    """One APPS record (Hugging Face layout; see `directory_rows` for the other) -> Problem."""
    number = _problem_number(rec.get("problem_id"))
    question = text_field(rec, "question")
    io = json_field(rec, "input_output")
    if not isinstance(io, dict):
        raise BadRecord("unparseable input_output",
                        f"expected a JSON object, got {type(io).__name__}")
    inputs, outputs = io.get("inputs"), io.get("outputs")
    if not isinstance(inputs, list) or not isinstance(outputs, list):
        raise BadRecord("unparseable input_output", "`inputs` and `outputs` must be lists")
    if len(inputs) != len(outputs):
        raise BadRecord("unparseable input_output",
                        f"{len(inputs)} inputs but {len(outputs)} outputs")
    if not inputs:
        raise BadRecord("empty tests")
    url = rec.get("url") if isinstance(rec.get("url"), str) else None
    fn_name = io.get("fn_name")
    metadata: dict[str, Any] = {"source": "apps", "problem_id": number}
    if url:
        metadata["url"] = url
    if fn_name:
        if not isinstance(fn_name, str):
            raise BadRecord("unparseable input_output", "`fn_name` is not a string")
        for i, args in enumerate(inputs):
            if not isinstance(args, list):
                raise BadRecord("unparseable input_output", f"call input {i} is a "
                                f"{type(args).__name__}, not a list of arguments")
        if _outputs_wrapped(outputs, url):
            outputs = [o[0] for o in outputs]
            metadata["outputs_unwrapped"] = True
        fmt = "call"
        tests = [{"input": a, "output": o} for a, o in zip(inputs, outputs)]
    else:
        fmt = "stdio"
        tests = [{"input": _stdio_text(a, f"input {i}"), "output": _stdio_text(o, f"output {i}")}
                 for i, (a, o) in enumerate(zip(inputs, outputs))]
    solutions = json_field(rec, "solutions", required=False) or []
    if not (isinstance(solutions, list) and all(isinstance(s, str) for s in solutions)):
        raise BadRecord("invalid solutions", "expected a JSON list of program texts")
    starter = rec.get("starter_code")
    if not (isinstance(starter, str) and starter.strip()):
        starter = None
    difficulty = rec.get("difficulty")
    return validated(dict(
        task_id=f"apps/{split}/{number}", prompt=question, format=fmt, tests=tests,
        time_limit_s=time_limits.dataset_limit(rec.get("time_limit")),
        fn_name=fn_name or None, starter_code=starter,
        solutions=[s for s in solutions if s.strip()],
        difficulty=difficulty if isinstance(difficulty, str) else None,
        split=split, metadata=metadata))


def source_rows(source: str, split: str) -> Iterator[Row]:
    """The records of `source` for `split`, whatever its layout (see the module docstring)."""
    split_dir = os.path.join(source, split)
    if os.path.isdir(split_dir) and not os.path.isfile(source):
        yield from directory_rows(split_dir)
    elif os.path.exists(source):
        files = local_json_files(source, split)
        if not files:
            raise RuntimeError(f"{source} has neither a {split}/ folder of APPS problems nor "
                               f"any .json/.jsonl file")
        for path in files:
            yield from json_rows(path)
    else:
        yield from hub_rows(source, split)


def load_apps(source: str, split: str, tally: Tally, limit: int | None = None,
              difficulty: str | None = None) -> list[Problem]:
    """Every problem of `source` that converts; each bad record goes to `tally` (stderr)."""
    problems: list[Problem] = []
    if limit is not None and limit <= 0:
        return problems
    for row in source_rows(source, split):
        if row.data is None:
            tally.skip(row.where, row.error or BadRecord("unreadable record"))
            continue
        if difficulty and row.data.get("difficulty") != difficulty:
            tally.not_selected += 1
            continue
        try:
            problems.append(convert_apps(row.data, split))
        except BadRecord as err:
            pid = row.data.get("problem_id")
            where = row.where  # a directory is named by its id; a file line is not
            if pid is not None and str(pid) not in where:
                where += f" (problem_id {pid})"
            tally.skip(where, err)
            continue
        tally.converted += 1
        if limit is not None and len(problems) >= limit:
            break
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="rltf data apps", description=__doc__.splitlines()[0])
    ap.add_argument("--source", required=True,
                    help="APPS folder (<source>/<split>/<id>/), HF-layout JSON/JSONL file or "
                    "folder, or a hub dataset name such as codeparrot/apps")
    ap.add_argument("--split", required=True, choices=("train", "test"))
    ap.add_argument("--out", required=True, help="problems JSONL to write")
    ap.add_argument("--solutions-out", default=None,
                    help="also write the reference programs as solutions JSONL")
    ap.add_argument("--limit", type=int, default=None, help="convert at most N problems")
    ap.add_argument("--difficulty", choices=DIFFICULTIES, default=None,
                    help="keep only problems of this difficulty")
    time_limits.add_arguments(ap)
    args = ap.parse_args(argv)
    tally = Tally("rltf data apps")
    try:
        problems = load_apps(args.source, args.split, tally, args.limit, args.difficulty)
    except RuntimeError as err:
        print(f"rltf data apps: {err}", file=sys.stderr)
        return 1
    problems = time_limits.apply(problems, args, "rltf data apps")
    return write_outputs("rltf data apps", problems, args.out, args.solutions_out, tally)


if __name__ == "__main__":
    sys.exit(main())
