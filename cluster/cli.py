"""The `rltf` command line.

    rltf exec --problems P --solutions S --out R [--workers N] [--ray]   judge programs
    rltf data humaneval --out F [--solutions-out S]                      HumanEval as JSONL
    rltf data synth|apps|mbpp ...                                        other task sources
    rltf sft ...                                                         warm start (SFT)
    rltf eval --model DIR --problems F --n N --k 1,10                    pass@k
    rltf build-tiny --family codet5|llama|qwen2|gpt2 --out DIR           a tiny real-family model
    rltf train [--config FILE] [section.key=value ...]                   online RLTF
    rltf scale executors N [--address ADDR]                             resize a running job
    rltf gen-tests --source DIR --out F                                  tests from source

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
    "build-tiny": ("learner.tiny_model", "main"),
    "eval": ("evaluation.run", "main"),
    "gen-tests": ("cluster.gentests_cmd", "main"),
    "scale": ("cluster.controller", "main"),
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
    sub.add_parser("eval", help="pass@k of a model on problems", add_help=False)
    sub.add_parser("build-tiny", help="a tiny random model of a real family, built here",
                   add_help=False)
    from cluster import train_cmd

    p_train = sub.add_parser("train", help="online RL from unit-test feedback",
                             description=train_cmd.__doc__.splitlines()[0])
    train_cmd.add_arguments(p_train)
    sub.add_parser("gen-tests", help="unit-test problems from Python source", add_help=False)
    sub.add_parser("scale", help="resize a running job's executor pool", add_help=False)

    if argv and argv[0] == "data" and len(argv) > 1 and argv[1] in _DATA_SOURCES:
        return _delegate(_DATA_SOURCES[argv[1]], argv[2:])
    if argv and argv[0] in _DELEGATED:
        return _delegate(_DELEGATED[argv[0]], argv[1:])
    args = ap.parse_args(argv)
    if args.cmd in ("exec", "train"):
        from cluster.auth import ClusterAccessError
        from core.config_reading import ConfigError
        from cluster.recovery import RestartsExhausted
        from cluster.startup import StartupError

        errors: tuple = (ConfigError, ClusterAccessError, StartupError, RestartsExhausted)
        if args.cmd == "train":  # not for exec: learner.models imports torch (seconds)
            from learner.models import ModelNotAvailable

            errors += (ModelNotAvailable,)
        try:
            return exec_cmd.run(args) if args.cmd == "exec" else train_cmd.run(args)
        except errors as err:
            print(f"rltf {args.cmd}: {err}", file=sys.stderr)
            return 2
    ap.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
