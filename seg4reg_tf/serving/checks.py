"""The value checks the serving settings share (`ServerConfig`, `BatchingConfig`, `RequestLimits`,
`VersionPolicy`, `ServedModel`): one definition of each rule."""
from __future__ import annotations

from typing import Any


def is_int(value: Any) -> bool:
    """An int and not a bool (`True` is an int to Python, never a count or a port here)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """An int or a float and not a bool (NaN passes: compare it, e.g. `not value >= 0`, to refuse it)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)
