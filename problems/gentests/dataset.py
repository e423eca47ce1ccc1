"""Problems as a Hugging Face `datasets` folder, and one reader for both problem file kinds.

    save_hf(problems, "out/hf")                 # datasets.load_from_disk("out/hf") reads it
    problems, bad = read_problems(path)         # a JSONL file or such a folder

The folder is a `datasets.Dataset` saved with `save_to_disk`, one row a problem, with the
fields of the problem record (docs/ARCHITECTURE.md, File formats): `tests` and `solutions`
are lists of strings (assert tests), `metadata` is a JSON string (its keys differ between
problems), the rest are strings or numbers (None where unset). `read_problems` turns rows back into `Problem` records, so
`rltf train data.source=jsonl data.train_file=out/hf data.heldout_file=...` reads it as it
reads a JSONL file.
"""

from __future__ import annotations

import json
from pathlib import Path

from core.records import BadLine, Problem, parse_record, read_jsonl

_STRING_FIELDS = ("task_id", "prompt", "format", "fn_name", "entry_point", "setup",
                  "starter_code", "difficulty", "split")


def _features():
    from datasets import Features, Sequence, Value

    cols = {name: Value("string") for name in _STRING_FIELDS}
    cols.update(tests=Sequence(Value("string")), solutions=Sequence(Value("string")),
                time_limit_s=Value("float64"), metadata=Value("string"))
    return Features(cols)


def to_row(p: Problem) -> dict:
    if p.format != "assert":
        raise ValueError(f"{p.task_id}: only assert-format problems are written as datasets "
                         f"rows (tests as strings); this one is {p.format!r}")
    row = {name: getattr(p, name) for name in _STRING_FIELDS}
    row.update(tests=list(p.tests), solutions=list(p.solutions), time_limit_s=p.time_limit_s,
               metadata=json.dumps(p.metadata, sort_keys=True))
    return row


def save_hf(problems: list[Problem], folder: str | Path) -> int:
    """Write the problems as a datasets folder (replacing one there); how many rows."""
    from datasets import Dataset

    ds = Dataset.from_list([to_row(p) for p in problems], features=_features())
    ds.save_to_disk(str(folder))
    return len(ds)


def is_hf_folder(path: str | Path) -> bool:
    path = Path(path)
    return path.is_dir() and ((path / "dataset_info.json").exists()
                              or (path / "dataset_dict.json").exists())


def read_problems(path: str | Path) -> tuple[list[Problem], list[BadLine]]:
    """Problems from a JSONL file or a datasets folder (a DatasetDict's `train` split, or its
    only split); rows that are not valid problems come back as BadLines (row numbers)."""
    path = Path(path)
    if not path.is_dir():
        return read_jsonl(path, Problem)
    if not is_hf_folder(path):
        raise ValueError(f"{path} is a folder but not a datasets folder (no dataset_info.json "
                         f"or dataset_dict.json): give a JSONL file or a `rltf gen-tests "
                         f"--hf-out` folder")
    from datasets import DatasetDict, load_from_disk

    ds = load_from_disk(str(path))
    if isinstance(ds, DatasetDict):
        if "train" not in ds and len(ds) != 1:
            raise ValueError(f"{path} holds splits {sorted(ds)}: point at one split's folder")
        ds = ds["train"] if "train" in ds else next(iter(ds.values()))
    good, bad = [], []
    for i, row in enumerate(ds, start=1):
        row = {k: v for k, v in row.items() if v is not None}
        try:
            if isinstance(row.get("metadata"), str):
                row["metadata"] = json.loads(row["metadata"])
            good.append(parse_record(Problem, row))
        except (ValueError, TypeError) as err:
            bad.append(BadLine(str(path), i, f"row {i}: {err}"))
    return good, bad
