"""`seg4reg` command line: a thin dispatcher; each package registers its own subcommands."""
from __future__ import annotations

import argparse
import importlib
import sys

# Each module exposes `register(subparsers)`, adding parsers whose `func(args) -> int` does the work.
_COMMAND_MODULES = (
    "seg4reg_tf.data.cli",
    "seg4reg_tf.training.cli",
    "seg4reg_tf.evaluation.cli",
    "seg4reg_tf.export.cli",
    "seg4reg_tf.serving.cli",
    "seg4reg_tf.tuning.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seg4reg",
        description="Seg4Reg+ scoliosis measurement: data tools, training, evaluation, export, serving.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name == name:  # that package has no commands yet
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
