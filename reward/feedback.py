"""Rewards from unit-test verdicts at three granularities (RLTF, arXiv 2307.04349, Sec. 3).

* coarse: one reward per program from its outcome: pass +1, fail -0.3, runtime error -0.6,
  syntax error -1. Timeouts, memory errors and output-limit stops count as runtime errors.
* adaptive: a failed program (wrong answers, no error) earns partial credit for the share of
  tests it passed: -0.3 + 1.3 x passed / total, which runs from the fail reward (nothing
  passed) to the pass reward (everything passed).
* fine-grained: the tokens the error is attributed to get an extra penalty (0.3 by default):
  the tokens of the error line ("line"), or every token when the error belongs to the whole
  program ("whole": a generation cut off mid-construct, a timeout, a recursion error).

Pure functions of the executor's Result fields; no torch, no Ray. The settings are the run's
`reward` section as is (`core.config.RewardConfig`).
"""

from __future__ import annotations

from typing import Literal, Protocol

from core.config import RewardConfig

Scope = Literal["line", "whole", "ignore"]
_RUNTIME_LIKE = ("runtime_error", "timeout", "memory_error", "output_limit")
# The four outcome classes of the coarse reward (and of a CodeRL-style outcome critic).
OUTCOME_CLASSES: tuple[str, ...] = ("pass", "fail", "runtime_error", "syntax_error")


class ResultLike(Protocol):
    outcome: str
    passed: int
    total: int
    error_type: str | None
    error_line: int | None
    truncated: bool


DEFAULT = RewardConfig()  # the paper's constants: the config's defaults


def coarse_reward(outcome: str, cfg: RewardConfig = DEFAULT) -> float:
    if outcome == "pass":
        return cfg.pass_reward
    if outcome == "fail":
        return cfg.fail_reward
    if outcome in _RUNTIME_LIKE:
        return cfg.runtime_error_reward
    if outcome == "syntax_error":
        return cfg.syntax_error_reward
    raise ValueError(f"unknown outcome {outcome!r}")


def outcome_class(outcome: str) -> str:
    """The coarse class of an executor outcome: timeouts, memory errors and output-limit stops
    count as runtime errors, as in the coarse reward."""
    if outcome in _RUNTIME_LIKE:
        return "runtime_error"
    if outcome in OUTCOME_CLASSES:
        return outcome
    raise ValueError(f"unknown outcome {outcome!r}: expected one of "
                     f"{OUTCOME_CLASSES + _RUNTIME_LIKE[1:]}")


def adaptive_reward(passed: int, total: int, cfg: RewardConfig = DEFAULT) -> float:
    """fail + (pass - fail) x passed/total: -0.3 + 1.3 x passed/total with the defaults."""
    if total <= 0 or not 0 <= passed <= total:
        raise ValueError(f"need 0 <= passed <= total and total > 0 (got {passed}/{total})")
    return cfg.fail_reward + (cfg.pass_reward - cfg.fail_reward) * passed / total


def sequence_reward(result: ResultLike, cfg: RewardConfig = DEFAULT) -> float:
    """The program's reward: adaptive for failed programs when enabled, else coarse."""
    if result.outcome == "fail" and cfg.adaptive and result.total > 0:
        return adaptive_reward(result.passed, result.total, cfg)
    return coarse_reward(result.outcome, cfg)


def _last_code_line(program: str) -> int:
    lines = program.splitlines()
    for i in range(len(lines), 0, -1):
        if lines[i - 1].strip():
            return i
    return 0


def error_scope(result: ResultLike, program: str | None = None) -> Scope:
    """Where fine-grained feedback applies, from the executor's structured fields.

    "whole": the program was cut off (the executor's `truncated` flag: it ends inside an
    unclosed bracket, string or block; or, given the program text, a syntax error on its last
    line), a timeout, or a recursion error. "line": a syntax error elsewhere, or a runtime
    error located on a line of the program. "ignore": passes, wrong answers, and errors with
    no line in the program (e.g. raised in library code called with bad arguments)."""
    outcome = result.outcome
    if outcome in ("pass", "fail"):
        return "ignore"
    if outcome == "timeout" or result.error_type == "RecursionError":
        return "whole"
    if outcome == "syntax_error":
        if result.truncated:
            return "whole"
        if program is not None and result.error_line is not None \
                and result.error_line >= _last_code_line(program):
            return "whole"
        return "line" if result.error_line else "ignore"
    if outcome in _RUNTIME_LIKE:
        return "line" if result.error_line else "ignore"
    raise ValueError(f"unknown outcome {outcome!r}")
