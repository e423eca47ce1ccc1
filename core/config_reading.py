"""Reading a config: YAML files, `section.key=value` overrides from the command line, and the
validation that lists every problem at once.

    cfg = load_config("configs/tiny.yaml", ["executor.workers=4"])

Validation happens when the config is built; `ConfigError` lists each wrong setting by its
dotted name, what was given and how to fix it, and every conflict among the valid settings
(`core/checks.py`). Nothing is silently rewritten. The tree itself is `core/config.py`.
"""

from __future__ import annotations

import copy
import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from core.checks import Conflicts
from core.config import RLTFConfig


class ConfigError(ValueError):
    """A config that cannot be used; the message names each field and the fix."""


def _section_fields(loc: tuple) -> list[str]:
    """The setting names of the section at `loc` (for an unknown key's likely spelling)."""
    model: Any = RLTFConfig
    for part in loc:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None or not hasattr(field.annotation, "model_fields"):
            return list(getattr(model, "model_fields", {}))
        model = field.annotation
    return list(model.model_fields)


def _field_problem(e: dict) -> tuple[str, str]:
    """(dotted path, what is wrong and the fix) of one pydantic field error."""
    loc = ".".join(str(x) for x in e["loc"])
    given = e.get("input")
    given_s = "" if isinstance(given, dict) else f"got {given!r}; "
    if e["type"] == "extra_forbidden":
        near = difflib.get_close_matches(str(e["loc"][-1]), _section_fields(e["loc"][:-1]), 1)
        hint = f"did you mean {near[0]}? " if near else ""
        return loc, (f"unknown setting; {hint}remove it or check its spelling (see "
                     "core/config.py for the fields)")
    if e["type"] == "missing":
        return loc, "missing; set it"
    msg = e["msg"]
    if msg.startswith("Input should be "):
        want = msg[len("Input should be "):]
        a_value = "a value " if want.startswith(("greater", "less")) else ""
        return loc, f"{given_s}set it to {a_value}{want}"
    return loc, f"{given_s}{msg}; change it"


def _problems(err: ValidationError) -> tuple[list[tuple[str, str]], frozenset[str]]:
    """Every problem of a validation error, and the top-level settings that were invalid."""
    out, broken = [], set()
    for e in err.errors():
        cause = (e.get("ctx") or {}).get("error")
        if isinstance(cause, Conflicts):
            out += cause.found
            continue
        out.append(_field_problem(e))
        if e["loc"]:
            broken.add(str(e["loc"][0]))
    return out, frozenset(broken)


def validate(data: dict[str, Any]) -> RLTFConfig:
    """The config of `data`, or one ConfigError listing every problem at once: each invalid
    setting, and every conflict among the valid ones (a cross-setting check that reads an
    invalid setting is skipped, as its verdict would mean nothing)."""
    try:
        return RLTFConfig.model_validate(data)
    except ValidationError as err:
        found, broken = _problems(err)
    if broken:  # the cross-setting checks did not run: run those on the valid settings
        rest = {k: v for k, v in data.items() if k not in broken}
        try:
            RLTFConfig.model_validate(rest, context={"broken": broken})
        except ValidationError as err:
            found += _problems(err)[0]
    lines = [f"  {path}: {msg}" for path, msg in found]
    raise ConfigError(f"invalid config ({len(lines)} problem{'s' * (len(lines) > 1)}):\n"
                      + "\n".join(lines))


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
    return validate(apply_overrides(data or {}, overrides or []))


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
