"""The experiment configs shipped with the package, found by name (`seg4reg train --config demo`).

A wheel (`pip install .`) carries the repository's `configs/*.yaml` as `seg4reg_tf/configs/`; a source
checkout or an editable install reads `configs/` next to the package. `base:` includes are relative to
the including file, so shipped configs extend each other as in the repository.
"""
from __future__ import annotations

import os

_PACKAGE = os.path.dirname(os.path.abspath(__file__))
_SEARCH = (os.path.join(_PACKAGE, "configs"),  # installed wheel
           os.path.join(os.path.dirname(_PACKAGE), "configs"))  # source checkout / editable install


def config_dir() -> str | None:
    """The directory of the shipped configs, or None when there is none."""
    for path in _SEARCH:
        if os.path.isdir(path):
            return path
    return None


def shipped_names() -> list[str]:
    """Names of the shipped configs (file names without `.yaml`), sorted."""
    folder = config_dir()
    if folder is None:
        return []
    return sorted(f[:-len(".yaml")] for f in os.listdir(folder) if f.endswith(".yaml"))


def resolve_config(value: str) -> str:
    """`value` if it is a file; else the shipped config it names: `NAME`, `NAME.yaml` or `configs/NAME.yaml`
    (the repository path, so documented commands work from any directory).

    FileNotFoundError naming the shipped configs when it is neither."""
    if os.path.isfile(value):
        return value
    folder, base = os.path.split(os.path.normpath(value))
    name = base[:-len(".yaml")] if base.endswith(".yaml") else base
    if folder in ("", "configs") and name in shipped_names():
        return os.path.join(config_dir(), f"{name}.yaml")
    shipped = ", ".join(shipped_names()) or "none found"
    raise FileNotFoundError(f"config file not found: {value} (nor is it a shipped config name; "
                            f"shipped: {shipped})")
