"""The `rltf` command line.

    rltf exec --problems P --solutions S --out R [--workers N] [--ray]   judge programs
    rltf data humaneval --out F [--solutions-out S]                      HumanEval as JSONL
    rltf data synth|apps|mbpp ...                                        other task sources
    rltf sft ...                                                         warm start (SFT)

Each subcommand's `--help` lists its options. Config settings can be overridden on the command
line as `section.key=value` wherever a subcommand takes `--config`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Subcommands whose parsing lives with their module: (module, function taking argv).
_DATA_SOURCES = {
    "humaneval": ("problems.humaneval", "main"),
    "synth": ("problems.synth", "main"),
    "apps": ("problems.apps", "main"),
    "mbpp": ("problems.mbpp", "main"),
}
_DELEGATED = {
    "sft": ("learner.sft", "main"),
}


def _delegate(target: tuple[str, str], argv: list[str]) -> int:
    module, func = target
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as err:
        print(f"rltf: {module} is not available ({err})", file=sys.stderr)
        return 2
    return int(getattr(mod, func)(argv) or 0)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(prog="rltf", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", metavar="COMMAND")
    from cluster import exec_cmd

    p_exec = sub.add_parser("exec", help="judge solutions against problems in the sandbox",
                            description=exec_cmd.__doc__.splitlines()[0])
    exec_cmd.add_arguments(p_exec)
    p_data = sub.add_parser("data", help="convert a task source to problems JSONL")
    p_data.add_argument("source", choices=sorted(_DATA_SOURCES))
    sub.add_parser("sft", help="supervised warm start on reference solutions", add_help=False)

    if argv and argv[0] == "data" and len(argv) > 1 and argv[1] in _DATA_SOURCES:
        return _delegate(_DATA_SOURCES[argv[1]], argv[2:])
    if argv and argv[0] in _DELEGATED:
        return _delegate(_DELEGATED[argv[0]], argv[1:])
    args = ap.parse_args(argv)
    if args.cmd == "exec":
        from cluster.config import ConfigError

        try:
            return exec_cmd.run(args)
        except ConfigError as err:
            print(f"rltf exec: {err}", file=sys.stderr)
            return 2
    ap.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
