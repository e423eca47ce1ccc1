"""Reading benchmark records for `rltf data` (shared by problems.apps and problems.mbpp):
records from a JSON/JSONL file, a folder of them or a hub dataset, each with where it came
from; their fields decoded with a clear reason when they cannot be (`BadRecord`); the tally
of converted and skipped records, each skipped one reported on stderr as it goes; and the
writing of the problems (and reference solutions) with the summary line.
"""

from __future__ import annotations

import glob
import json
import os
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterator

from core.records import Problem, Solution, parse_record, write_jsonl


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
