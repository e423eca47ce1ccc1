"""One pydantic config tree for every part of rltf, loaded from YAML with `section.key=value`
overrides from the command line.

Every setting is documented once, in its `Field(description=...)`. Validation happens when the
config is built; `ConfigError` lists each wrong setting by its dotted name, what was given and
how to fix it. Nothing is silently rewritten.

    cfg = load_config("configs/tiny.yaml", ["executor.workers=4"])
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class ConfigError(ValueError):
    """A config that cannot be used; the message names each field and the fix."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ExecutorConfig(Section):
    """The sandboxed unit-test executor and its pool of workers."""

    workers: int = Field(
        default=2, ge=1,
        description="Executor workers (Ray actors with --ray); each runs one program at a time "
        "in its own fork-server. One per CPU core is a good start.",
    )
    cpus_per_worker: float = Field(
        default=1.0, gt=0, description="CPUs Ray reserves for each executor actor."
    )
    resources: dict[str, float] = Field(
        default_factory=dict,
        description="Extra Ray custom resources each executor actor asks for, e.g. "
        "{executor_node: 1}, so that executors land on CPU-only node types.",
    )
    time_limit_s: float = Field(
        default=4.0, gt=0,
        description="Wall-clock limit for one unit test, unless the problem sets time_limit_s.",
    )
    program_budget_s: float = Field(
        default=30.0, gt=0,
        description="Wall-clock budget for all the tests of one program; tests not started "
        "when it runs out are failed as not run.",
    )
    memory_mb: int = Field(
        default=2048, ge=64, description="Address-space limit (RLIMIT_AS) of a program, in MiB."
    )
    output_limit_kb: int = Field(
        default=4096, ge=1,
        description="Cap on what one test may print (stdout and stderr together), in KiB; "
        "a program that prints more is stopped with outcome output_limit.",
    )
    file_size_mb: int = Field(
        default=16, ge=1, description="Largest file a program may write (RLIMIT_FSIZE), in MiB."
    )
    max_open_files: int = Field(
        default=64, ge=16, description="Open file descriptors a program may hold (RLIMIT_NOFILE)."
    )
    max_processes: int = Field(
        default=16, ge=1,
        description="Processes and threads a program may run at once (RLIMIT_NPROC, per "
        "sandbox user); it stops fork bombs.",
    )
    isolation: Literal["auto", "strict", "minimal"] = Field(
        default="auto",
        description="auto: the strongest sandbox this kernel allows (namespaces, separate "
        "user); strict: refuse to start unless network and file-system isolation and a "
        "separate user are all in place; minimal: rlimits and process groups only.",
    )
    uid_base: int = Field(
        default=61000, ge=1000,
        description="When started as root, programs run as the first free UID at or above "
        "this one (one UID per worker slot).",
    )
    max_in_flight: int = Field(
        default=4, ge=1,
        description="Programs queued per worker before submit() blocks (backpressure).",
    )
    float_tolerance: float = Field(
        default=1e-6, ge=0,
        description="Relative and absolute tolerance when comparing numbers in outputs.",
    )


class RLTFConfig(Section):
    """The whole configuration of a run."""

    preset: str = Field(default="custom", description="Name of the preset, used in run folders.")
    seed: int = Field(default=0, description="Seed for every random choice of the run.")
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig,
                                     description="Unit-test executor.")

    @model_validator(mode="after")
    def _cross_checks(self) -> "RLTFConfig":
        if self.executor.program_budget_s < self.executor.time_limit_s:
            raise ValueError(
                "executor.program_budget_s must be at least executor.time_limit_s "
                f"({self.executor.program_budget_s} < {self.executor.time_limit_s}); raise "
                "program_budget_s or lower time_limit_s"
            )
        return self


def _format_errors(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"])
        given = e.get("input")
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            fix = "remove it or check its spelling (see cluster/config.py for the fields)"
        elif e["type"] == "missing":
            fix = "set it"
        else:
            fix = "change it"
        given_s = "" if isinstance(given, dict) else f" (got {given!r})"
        where = f"{loc}: " if loc else ""
        lines.append(f"  {where}{msg}{given_s}; {fix}")
    return "invalid config:\n" + "\n".join(lines)


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b=value` -> (["a", "b"], value), the value read as YAML (so 3 is int, [1,2] a list)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form section.key=value")
    key, raw = text.split("=", 1)
    path = [p for p in key.strip().split(".") if p]
    if not path:
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({err})") from None
    return path, value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set each `section.key=value` in a nested dict (copied), creating sections as needed."""
    import copy

    data = copy.deepcopy(data)
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"override {text!r}: {part} is a value, not a section")
            node = nxt
        node[path[-1]] = value
    return data


def build_config(data: dict[str, Any] | None = None, overrides: list[str] | None = None
                 ) -> RLTFConfig:
    data = apply_overrides(data or {}, overrides or [])
    try:
        return RLTFConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_errors(err)) from None


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RLTFConfig:
    """Load a YAML file (or the defaults when `path` is None) and apply the overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist; pass an existing YAML file")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {err}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
        data = loaded
        data.setdefault("preset", path.stem)
    try:
        return build_config(data, overrides)
    except ConfigError as err:
        where = f"{path}: " if path is not None else ""
        raise ConfigError(f"{where}{err}") from None


def dump_config(cfg: RLTFConfig) -> str:
    """The resolved config as YAML, suitable for load_config()."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
