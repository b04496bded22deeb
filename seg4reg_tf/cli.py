"""`seg4reg` command line: a thin dispatcher; each package registers its own subcommands.

The command modules import TensorFlow only inside their commands, so that `--help` and usage errors answer
at once; `main` keeps TensorFlow's start-up lines off the terminal unless `--verbose` (see quiet_tf).
"""
from __future__ import annotations

import argparse
import importlib
import sys

from seg4reg_tf import quiet_tf
from seg4reg_tf.shipped_configs import resolve_config

# Each module exposes `register(subparsers)`, adding parsers whose `func(args) -> int` does the work.
_COMMAND_MODULES = (
    "seg4reg_tf.data.cli",
    "seg4reg_tf.training.cli",
    "seg4reg_tf.evaluation.cli",
    "seg4reg_tf.export.cli",
    "seg4reg_tf.serving.cli",
    "seg4reg_tf.client.cli",
    "seg4reg_tf.tuning.cli",
)


def build_parser() -> argparse.ArgumentParser:
    """The `seg4reg` parser; ImportError naming the module when a command module fails to import."""
    parser = argparse.ArgumentParser(
        prog="seg4reg",
        description="Seg4Reg+ scoliosis measurement: data tools, training, evaluation, export, serving.",
    )
    parser.add_argument("--verbose", dest="tf_verbose", action="store_true",  # not `verbose`: commands have theirs
                        help="show TensorFlow's start-up and C++ log lines (hidden unless TF_CPP_MIN_LOG_LEVEL=0)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError as err:  # never drop a command silently
            raise ImportError(f"seg4reg: cannot load the commands of {name}: {err}", name=name) from err
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_tf.install(verbose=args.tf_verbose)
    if isinstance(getattr(args, "config", None), str):  # `train` / `tune --config`: a file or a shipped name
        try:
            args.config = resolve_config(args.config)
        except FileNotFoundError as err:
            print(f"seg4reg {args.command}: config error: {err}", file=sys.stderr)
            return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
