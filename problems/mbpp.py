"""MBPP (Austin et al., 2021) as `assert`-format problems JSONL.

    rltf data mbpp --source PATH_OR_NAME --split train|test|validation|prompt --out F
                   [--solutions-out S]

`--source` is a local JSON/JSONL file, or a folder of them (files whose name starts with the
split name, e.g. `test.jsonl`, when there are any, else all), read with `datasets`' json loader,
or otherwise a dataset name on the Hugging Face hub (`mbpp`, needs a network). Each record has
`task_id`, `text`, `code`, `test_list`, `test_setup_code` and `challenge_test_list` (the
"sanitized" variant's `prompt` and `test_imports` are read as `text` and `test_setup_code`).

The original all-in-one `mbpp.jsonl` holds every split; its splits are task_id ranges (prompt
1-10, test 11-510, validation 511-600, train 601-974). When the records read span more than
one of these ranges, only those of `--split` are kept (and the others counted as not
selected); records that all lie in one range are taken as the split asked for.

Each record becomes one problem:

* `prompt`: the usual MBPP prompt, the task description followed by the first test as an
  example of the function's name and signature:
  "<text>\nYour code should pass this test:\n<test_list[0]>";
* `entry_point`: the function the first test calls (the first name called there that the
  reference code defines; failing that, the first called name that is not a builtin);
* `tests`: `test_list`, one assert statement per unit test; `setup`: `test_setup_code`;
  `challenge_test_list` is kept in `metadata["challenge_tests"]`;
* `solutions`: the reference `code`, also written as Solution records by `--solutions-out`
  (`sample_id` "ref-0"); task_id is `mbpp/<task_id>`.

Time limits: MBPP gives none, so each problem's limit comes from its reference's measured
time (`problems.time_limits`; `--time-limits keep` skips that), and a reference that does not
pass is reported here.

A record that cannot be converted (a missing field, no tests, test code that is not valid
Python or that the executor cannot judge, a field that is not valid JSON) is reported on
standard error with its file and line (or row) and the reason, and counted in the final summary
line; it never stops the others. The exit status is 0 when at least one problem was converted,
else 1.
"""

from __future__ import annotations

import argparse
import ast
import builtins
import os
import sys
import warnings
from typing import Any, Iterator

from core.records import Problem
from executor.testcode import TestCodeError, plan_assert_tests
from problems import time_limits
from problems.source_records import (BadRecord, Row, Tally, hub_rows, json_field, json_rows,
                                     local_json_files, text_field, validated, write_outputs)

SPLITS = ("train", "test", "validation", "prompt")
# The original mbpp.jsonl's splits, by task_id (MBPP's README).
SPLIT_IDS = {"prompt": range(1, 11), "test": range(11, 511), "validation": range(511, 601),
             "train": range(601, 975)}
PROMPT_TEMPLATE = "{text}\nYour code should pass this test:\n{example}"


def split_of(task_id: Any) -> str | None:
    """The split of an original MBPP task_id, or None when it is not one."""
    try:
        n = int(task_id)
    except (TypeError, ValueError):
        return None
    return next((name for name, ids in SPLIT_IDS.items() if n in ids), None)


def _called_names(test: str) -> list[str]:
    """Names called as plain functions in `test`, in source order."""
    calls = [n for n in ast.walk(ast.parse(test))
             if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
    calls.sort(key=lambda n: (n.lineno, n.col_offset))
    return [n.func.id for n in calls]


def _defined_names(code: str) -> set[str]:
    """Top-level functions and classes the reference code defines (empty if it does not parse)."""
    try:
        with warnings.catch_warnings():  # e.g. "invalid escape sequence" in a reference
            warnings.simplefilter("ignore")
            tree = ast.parse(code)
    except SyntaxError:
        return set()
    return {n.name for n in tree.body
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}


def entry_point_of(test: str, code: str) -> str:
    """The function the test exercises: see the module docstring."""
    called = _called_names(test)
    defined = _defined_names(code)
    for name in called:
        if name in defined:
            return name
    for name in called:
        if not hasattr(builtins, name):
            return name
    raise BadRecord("no entry point", f"the first test calls no function: {test!r}")


def _test_list(rec: dict, name: str, required: bool) -> list[str]:
    tests = json_field(rec, name, required=required)  # a list, or a JSON string of one
    if tests is None:
        return []
    if not isinstance(tests, list):
        raise BadRecord(f"invalid {name}", f"expected a list, got {type(tests).__name__}")
    for i, t in enumerate(tests):
        if not isinstance(t, str) or not t.strip():
            raise BadRecord(f"invalid {name}", f"test {i} is not a non-empty string")
    return list(tests)


def convert_mbpp(rec: dict, split: str) -> Problem:
    """One MBPP record -> an `assert` problem."""
    task_id = rec.get("task_id")
    if task_id is None or (isinstance(task_id, str) and not task_id.strip()):
        raise BadRecord("missing task_id")
    sanitized = rec.get("text") is None and rec.get("prompt") is not None
    text = text_field(rec, "prompt" if sanitized else "text")
    code = text_field(rec, "code")
    tests = _test_list(rec, "test_list", required=True)
    if not tests:
        raise BadRecord("empty tests")
    setup = rec.get("test_setup_code")
    if setup is None and isinstance(rec.get("test_imports"), list):
        setup = "\n".join(rec["test_imports"])
    if setup is not None and not isinstance(setup, str):
        raise BadRecord("invalid test_setup_code", f"expected a string, got {type(setup).__name__}")
    try:  # exactly what the executor will do with the tests: fail here, not at run time
        plan_assert_tests(setup, tests)
        entry_point = entry_point_of(tests[0], code)
    except TestCodeError as err:
        raise BadRecord("unparseable test code", str(err)) from None
    except SyntaxError as err:
        raise BadRecord("unparseable test code", f"{err.msg} (line {err.lineno})") from None
    challenge = _test_list(rec, "challenge_test_list", required=False)
    metadata: dict[str, Any] = {"source": "mbpp", "mbpp_task_id": task_id}
    if challenge:
        metadata["challenge_tests"] = challenge
    return validated(dict(
        task_id=f"mbpp/{task_id}",
        prompt=PROMPT_TEMPLATE.format(text=text.strip(), example=tests[0]),
        format="assert", entry_point=entry_point, tests=tests,
        setup=setup if setup and setup.strip() else None, solutions=[code], split=split,
        metadata=metadata))


def source_rows(source: str, split: str) -> Iterator[Row]:
    if os.path.exists(source):
        files = local_json_files(source, split)
        if not files:
            raise RuntimeError(f"{source} holds no .json/.jsonl file")
        for path in files:
            yield from json_rows(path)
    else:
        yield from hub_rows(source, split)


def load_mbpp(source: str, split: str, tally: Tally) -> list:
    """Every problem of `source` that converts; each bad record goes to `tally` (stderr)."""
    rows = list(source_rows(source, split))  # MBPP is small; the split rule needs them all
    seen = {split_of(r.data.get("task_id")) for r in rows if r.data is not None}
    by_id = len(seen - {None}) > 1
    if by_id:
        print(f"note: the records span several MBPP splits ({', '.join(sorted(seen - {None}))}); "
              f"keeping those of {split} (task_id {SPLIT_IDS[split].start}-"
              f"{SPLIT_IDS[split].stop - 1})", file=sys.stderr)
    problems = []
    for row in rows:
        if row.data is None:
            tally.skip(row.where, row.error or BadRecord("unreadable record"))
            continue
        own = split_of(row.data.get("task_id"))
        if by_id and own is not None and own != split:
            tally.not_selected += 1
            continue
        try:
            problems.append(convert_mbpp(row.data, split))
        except BadRecord as err:
            tid = row.data.get("task_id")
            tally.skip(row.where if tid is None else f"{row.where} (task_id {tid})", err)
            continue
        tally.converted += 1
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="rltf data mbpp", description=__doc__.splitlines()[0])
    ap.add_argument("--source", required=True,
                    help="MBPP JSON/JSONL file or folder, or a hub dataset name such as mbpp")
    ap.add_argument("--split", required=True, choices=SPLITS)
    ap.add_argument("--out", required=True, help="problems JSONL to write")
    ap.add_argument("--solutions-out", default=None,
                    help="also write the reference programs as solutions JSONL")
    time_limits.add_arguments(ap)
    args = ap.parse_args(argv)
    tally = Tally("rltf data mbpp")
    try:
        problems = load_mbpp(args.source, args.split, tally)
    except RuntimeError as err:
        print(f"rltf data mbpp: {err}", file=sys.stderr)
        return 1
    problems = time_limits.apply(problems, args, "rltf data mbpp")
    return write_outputs("rltf data mbpp", problems, args.out, args.solutions_out, tally)


if __name__ == "__main__":
    sys.exit(main())
