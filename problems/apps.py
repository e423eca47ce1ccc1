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

The small helpers for reading records and reporting bad ones are shared with problems.mbpp.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterator

from core.records import Problem, Solution, parse_record, write_jsonl
from problems import time_limits

DIFFICULTIES = ("introductory", "interview", "competition")


# -- shared: bad records, where they are, and the summary -----------------------------------
class BadRecord(ValueError):
    """A source record that cannot become a problem. `kind` is the short reason counted in the
    summary line (e.g. "invalid JSON in input_output"); `detail` says more about this one."""

    def __init__(self, kind: str, detail: str = ""):
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind
        self.detail = detail


@dataclass
class Row:
    """One source record and where it came from (`path:line`, a directory, or a hub row).
    `data` is None when the record could not even be read; `error` then says why."""

    where: str
    data: dict | None
    error: BadRecord | None = None


class Tally:
    """Counts converted and skipped records, reports each skipped one on stderr as it goes."""

    def __init__(self, prog: str):
        self.prog = prog
        self.converted = 0
        self.skipped: Counter[str] = Counter()
        self.not_selected = 0  # filtered out on purpose (--difficulty, --split by id)

    def skip(self, where: str, err: BadRecord) -> None:
        self.skipped[err.kind] += 1
        print(f"{self.prog}: skipped {where}: {err}", file=sys.stderr)

    def summary(self) -> str:
        m = sum(self.skipped.values())
        line = f"converted {self.converted}, skipped {m}"
        if m:
            line += ": " + ", ".join(f"{kind} ({n})" for kind, n in self.skipped.most_common())
        if self.not_selected:
            line += f" ({self.not_selected} not selected)"
        return line


def json_field(rec: dict, name: str, required: bool = True) -> Any:
    """A field that the source stores as a JSON string (already decoded values pass through).
    Missing, null or empty: BadRecord("missing <name>") if required, else None."""
    value = rec.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise BadRecord(f"missing {name}")
        return None
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as err:
        raise BadRecord(f"invalid JSON in {name}",
                        f"{err.msg} (line {err.lineno}, column {err.colno})") from None


def text_field(rec: dict, name: str) -> str:
    """A required, non-blank string field."""
    value = rec.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise BadRecord(f"missing {name}")
    if not isinstance(value, str):
        raise BadRecord(f"invalid {name}", f"expected a string, got {type(value).__name__}")
    return value


def validated(fields: dict) -> Problem:
    """A Problem from keyword fields, or BadRecord("invalid problem") with pydantic's reason."""
    try:
        return parse_record(Problem, fields)
    except ValueError as err:
        raise BadRecord("invalid problem", str(err)) from None


def _nonblank_line_numbers(path: str) -> list[int]:
    with open(path, encoding="utf-8", errors="replace") as fh:
        return [n for n, raw in enumerate(fh, start=1) if raw.strip()]


def _is_json_array(path: str) -> bool:
    with open(path, encoding="utf-8", errors="replace") as fh:
        for raw in fh:
            if raw.strip():
                return raw.lstrip().startswith("[")
    return False


def _rows_stdlib(path: str) -> Iterator[Row]:
    """Every record of a JSON array file or a JSONL file, read without `datasets`, so that one
    malformed line costs only that line."""
    if _is_json_array(path):
        try:
            with open(path, encoding="utf-8") as fh:
                records = json.load(fh)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            yield Row(path, None, BadRecord("invalid JSON file", str(err)))
            return
        for i, rec in enumerate(records, start=1):
            where = f"{path} record {i}"
            if isinstance(rec, dict):
                yield Row(where, rec)
            else:
                yield Row(where, None, BadRecord("not a JSON object", type(rec).__name__))
        return
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                rec = json.loads(raw)
            except json.JSONDecodeError as err:
                yield Row(where, None,
                          BadRecord("invalid JSON line", f"{err.msg} (column {err.colno})"))
                continue
            if isinstance(rec, dict):
                yield Row(where, rec)
            else:
                yield Row(where, None, BadRecord("not a JSON object", type(rec).__name__))


def _quiet_datasets():
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    return datasets


def json_rows(path: str) -> Iterator[Row]:
    """The records of one local JSON/JSONL file, read through `datasets.load_dataset("json")`.

    `datasets` builds one Arrow table per file, so a single malformed line (or a column whose
    type changes between records) makes it reject the whole file; the file is then read again
    line by line, and only the malformed lines are reported. Rows are located as `path:line`
    (JSONL) or `path record <i>` (a JSON array)."""
    datasets = _quiet_datasets()
    with tempfile.TemporaryDirectory(prefix="rltf-data-") as cache:  # no cache for local files
        try:
            ds = datasets.load_dataset("json", data_files=path, split="train", cache_dir=cache)
        except Exception as err:  # noqa: BLE001 - any reader failure: fall back, per line
            print(f"note: datasets could not read {path} as one table "
                  f"({type(err).__name__}: {str(err)[:200]}); reading it record by record",
                  file=sys.stderr)
            yield from _rows_stdlib(path)
            return
        lines = None if _is_json_array(path) else _nonblank_line_numbers(path)
        if lines is not None and len(lines) != len(ds):
            lines = None
        for i, rec in enumerate(ds):
            where = f"{path}:{lines[i]}" if lines is not None else f"{path} record {i + 1}"
            yield Row(where, rec)


def local_json_files(source: str, split: str) -> list[str]:
    """The JSON/JSONL files of `source` (a file, or a folder of files) to read for `split`:
    in a folder, those whose name starts with the split name if there are any, else all."""
    if os.path.isfile(source):
        return [source]
    files = sorted(f for pattern in ("*.json", "*.jsonl")
                   for f in glob.glob(os.path.join(source, pattern)))
    of_split = [f for f in files if os.path.basename(f).startswith(split)]
    return of_split or files


def hub_rows(name: str, split: str) -> Iterator[Row]:
    """Rows of a Hugging Face hub dataset; raises RuntimeError with a readable reason when it
    cannot be loaded (no network, unknown name, a script-based dataset...)."""
    if name.startswith(("/", "./", "../", "~")) or name.endswith((".json", ".jsonl")):
        raise RuntimeError(f"{name}: no such file or folder")
    datasets = _quiet_datasets()
    try:
        ds = datasets.load_dataset(name, split=split)
    except Exception as err:  # noqa: BLE001 - every failure gets the same clear message
        raise RuntimeError(
            f"{name!r} is not a local file or folder, and loading it from the Hugging Face hub "
            f"failed ({type(err).__name__}: {str(err)[:300]}). Without a network, download the "
            f"data and pass the local file or folder as --source.") from None
    for i, rec in enumerate(ds):
        yield Row(f"{name}[{split}] row {i}", dict(rec))


# -- APPS ------------------------------------------------------------------------------------
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


def write_outputs(prog: str, problems: list[Problem], out: str, solutions_out: str | None,
                  tally: Tally) -> int:
    """Write problems (and reference solutions), print the summary; the exit status."""
    n = write_jsonl(out, problems)
    print(f"wrote {n} problems ({sum(len(p.tests) for p in problems)} tests) to {out}",
          file=sys.stderr)
    if solutions_out:
        sols = [Solution(task_id=p.task_id, completion=s, sample_id=f"ref-{i}")
                for p in problems for i, s in enumerate(p.solutions)]
        write_jsonl(solutions_out, sols)
        print(f"wrote {len(sols)} reference solutions to {solutions_out}", file=sys.stderr)
    print(f"{prog}: {tally.summary()}", file=sys.stderr)
    return 0 if tally.converted else 1


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
