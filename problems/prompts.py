"""How a problem becomes the text a model continues, and how a generation becomes a program.

Convention used everywhere (sampler, warm start, evaluation, rewards):

    prompt text  = statement part + program_prefix
    program      = program_prefix + generated text

`program_prefix` is the code the model continues (starter code, or a HumanEval signature with
its docstring); it is empty when the model writes the whole program. The executor judges
`program`; error lines are lines of `program`, and a generated token's character span in the
program is its span in the generated text shifted by `len(program_prefix)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class ProblemLike(Protocol):
    prompt: str
    format: str
    fn_name: str | None
    entry_point: str | None
    starter_code: str | None


@dataclass(frozen=True)
class PromptParts:
    text: str  # everything fed to the model
    program_prefix: str  # the tail of `text` that is part of the program

    def program(self, generated: str) -> str:
        return self.program_prefix + generated


def _as_comment(text: str) -> str:
    lines = text.strip("\n").splitlines() or [""]
    return "".join(f"# {line}".rstrip() + "\n" for line in lines)


def build_prompt(problem: ProblemLike) -> PromptParts:
    """The prompt for one problem, per format.

    - A prompt that already is code ending in the starter code (HumanEval) is used as is and
      the model continues it.
    - Otherwise the statement becomes a comment block, followed by an instruction for the
      format and the starter code (if any), which the model continues.
    """
    starter = problem.starter_code or ""
    if starter and problem.prompt.endswith(starter):
        return PromptParts(text=problem.prompt, program_prefix=problem.prompt[len(problem.prompt) - len(starter):])
    header = _as_comment(problem.prompt)
    if problem.format == "stdio":
        header += "# Read the input from standard input and print the answer.\n"
    elif problem.format == "call" and not starter:
        header += f"# Write a function named {problem.fn_name}.\n"
    elif problem.format == "assert" and not starter:
        header += f"# Write a function named {problem.entry_point}.\n"
    return PromptParts(text=header + starter, program_prefix=starter)
