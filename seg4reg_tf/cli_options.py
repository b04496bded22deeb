"""What the command lines share: an option's former spelling, kept for one release."""
from __future__ import annotations

import argparse
import sys


class DeprecatedSpelling(argparse.Action):
    """An option's former spelling (`new`: the current one): stores into the current option's dest, hidden
    from --help, and says so on stderr."""

    def __init__(self, option_strings, dest, new: str, **kwargs):
        self.new = new
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"{parser.prog}: {option_string} is deprecated (removed in the next release): use {self.new}",
              file=sys.stderr)
        setattr(namespace, self.dest, values)
