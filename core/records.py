"""Typed records for problems, solutions and execution results, and their JSONL files.

The field names and meanings are those of docs/ARCHITECTURE.md ("File formats"). Every
record is a pydantic model, so a malformed line is rejected with the field that is wrong;
`read_jsonl` reports such lines with the file name and line number and keeps every good line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

Format = Literal["stdio", "call", "assert"]
# The outcome vocabulary, defined here once: one outcome per judged program (`Result.outcome`).
Outcome = Literal[
    "pass", "fail", "runtime_error", "syntax_error", "timeout", "memory_error", "output_limit"
]
# One status for each unit test of a program. `unjudgeable`: the test needs something of a
# value that the judge cannot compare without running program code (a program object's method
# or `__repr__`, a value too large or too deep to cross); see `Result`.
TestStatus = Literal[
    "pass", "fail", "error", "timeout", "memory_error", "output_limit", "crash", "not_run",
    "unjudgeable"
]
OUTCOMES: tuple[str, ...] = Outcome.__args__  # type: ignore[attr-defined]


class Problem(BaseModel):
    """One programming task with its unit tests."""

    model_config = ConfigDict(extra="forbid")

    task_id: str = Field(description="Unique identifier of the task.")
    prompt: str = Field(description="Natural-language statement (and, for HumanEval, the signature).")
    format: Format = Field(description="How the tests run: stdio, call or assert.")
    tests: list[Any] = Field(description="Unit tests; their shape depends on `format`.")
    fn_name: str | None = Field(default=None, description="`call`: the function or method to call.")
    entry_point: str | None = Field(default=None, description="`assert`: the function under test.")
    setup: str | None = Field(default=None, description="`assert`: code run before the tests.")
    starter_code: str | None = Field(default=None, description="Code the program must start from.")
    solutions: list[str] = Field(default_factory=list, description="Reference programs.")
    time_limit_s: float | None = Field(default=None, gt=0, description="Per-test time limit.")
    difficulty: str | None = Field(default=None, description="Difficulty label of the source.")
    split: str | None = Field(default=None, description="train / heldout / test, where known.")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Anything else.")

    @model_validator(mode="after")
    def _check_tests(self) -> "Problem":
        if not self.tests:
            raise ValueError("`tests` is empty: a problem needs at least one unit test")
        if self.format == "stdio":
            for i, t in enumerate(self.tests):
                if not (isinstance(t, dict) and isinstance(t.get("input"), str)
                        and isinstance(t.get("output"), str)):
                    raise ValueError(f"stdio test {i} must be {{'input': str, 'output': str}}")
        elif self.format == "call":
            if not self.fn_name:
                raise ValueError("a `call` problem needs `fn_name`")
            for i, t in enumerate(self.tests):
                if not (isinstance(t, dict) and isinstance(t.get("input"), list) and "output" in t):
                    raise ValueError(f"call test {i} must be {{'input': [args...], 'output': value}}")
        else:
            if not self.entry_point:
                raise ValueError("an `assert` problem needs `entry_point`")
            for i, t in enumerate(self.tests):
                if not isinstance(t, str) or not t.strip():
                    raise ValueError(f"assert test {i} must be a non-empty string of Python code")
        return self


def slice_of(problem: Problem) -> str:
    """The slice a problem is reported in: how its family is taught in training (its
    `teacher`), or "all"."""
    return str(problem.metadata.get("teacher") or "all")


class Solution(BaseModel):
    """A program to judge against the problem with the same `task_id`."""

    model_config = ConfigDict(extra="ignore")

    task_id: str = Field(description="The problem this program answers.")
    completion: str = Field(description="The whole program text, as judged.")
    sample_id: str | int | None = Field(default=None, description="Distinguishes samples of a task.")


class Result(BaseModel):
    """The verdict on one solution. `error_line` is 1-based in the completion as given.

    A test the judge cannot decide (status `unjudgeable`) does not pass, and it is not the
    program's error: when no test raised, timed out or crashed, the outcome is `fail`, with
    `error_type` "Unjudgeable", `error_message` naming the value and what the test needed of
    it, and no `error_line` (so the fine-grained reward blames no line). The outcomes stay the
    seven of `Outcome`, so rewards and pass@k need no new case; a caller that wants to keep
    such programs out of training or evaluation finds them by that `error_type`."""

    model_config = ConfigDict(extra="forbid")

    task_id: str
    sample_id: str | int | None = None
    outcome: Outcome
    passed: int = Field(ge=0)
    total: int = Field(ge=0)
    tests: list[TestStatus] = Field(default_factory=list, description="One status a test.")
    error_type: str | None = Field(default=None, description="Exception class name, e.g. NameError.")
    error_line: int | None = Field(default=None, description="1-based line in the completion.")
    error_message: str | None = None
    truncated: bool = Field(
        default=False,
        description="The program ends inside an unfinished construct (unclosed bracket, string "
        "or block), as a generation cut off by the token limit does.",
    )
    duration_s: float = Field(default=0.0, ge=0)
    isolation: str | None = Field(default=None, description="Sandbox tier that ran the program.")

    @property
    def pass_ratio(self) -> float:
        return self.passed / self.total if self.total else 0.0


@dataclass(frozen=True)
class BadLine:
    """A line of a JSONL file that could not be read as a record."""

    path: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


R = TypeVar("R", bound=BaseModel)


def _describe(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"]) or "record"
        parts.append(f"{loc}: {e['msg']}")
    return "; ".join(parts)


def parse_record(kind: type[R], obj: Any) -> R:
    """Validate one decoded JSON value as `kind`; raises ValueError with a readable reason."""
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    try:
        return kind.model_validate(obj)
    except ValidationError as err:
        raise ValueError(_describe(err)) from None


def iter_jsonl(path: str | Path, kind: type[R]) -> Iterator[R | BadLine]:
    """Yield each record of a JSONL file, or a BadLine for a line that is not one."""
    path = str(path)
    with open(path, encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as err:
                yield BadLine(path, lineno, f"bad JSON: {err.msg} (column {err.colno})")
                continue
            try:
                yield parse_record(kind, obj)
            except ValueError as err:
                yield BadLine(path, lineno, str(err))


def read_jsonl(path: str | Path, kind: type[R]) -> tuple[list[R], list[BadLine]]:
    """Read every good record of a JSONL file; bad lines come back separately, never lost."""
    good: list[R] = []
    bad: list[BadLine] = []
    for item in iter_jsonl(path, kind):
        (bad if isinstance(item, BadLine) else good).append(item)  # type: ignore[arg-type]
    return good, bad


def write_jsonl(path: str | Path, records: Iterable[BaseModel]) -> int:
    """Write records as JSONL (parents created); returns how many were written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(path, "w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(rec.model_dump_json(exclude_none=False) + "\n")
            n += 1
    return n
