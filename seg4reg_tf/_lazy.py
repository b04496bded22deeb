"""Lazy package attributes, so that importing a package does not start TensorFlow or matplotlib."""
from __future__ import annotations

import importlib


def lazy_getattr(package: str, table: dict[str, str]):
    """A module `__getattr__` resolving `name` from the module `table[name]` on first use."""

    def __getattr__(name: str):
        if name in table:
            return getattr(importlib.import_module(table[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
