"""Typed dataclass configs: one converter for YAML mappings, `--set` overrides and typed replacements.

`from_dict(cls, data, prefix)` builds a dataclass tree from a mapping, checking keys and types;
`check_fields(self, prefix)` runs the same converter from a config's `__post_init__` (direct
construction); `replace_paths(cfg, {"train.learning_rate": 1e-3})` is a checked typed copy.
`read_config_dict` follows `base:` files, `apply_overrides` applies `section.key=value` strings,
`save_config` writes YAML. Every error is a `ConfigError` whose message starts with the dotted key.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import numbers
import os
import re
import types
import typing
import warnings
from typing import Any, Literal, Union

import yaml

# YAML 1.1 reads `1e-4` (no dot) and `1.0e4` (unsigned exponent) as strings: floats accept those
_EXP_NUMERAL = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


class ConfigError(ValueError):
    """A config problem; the message starts with the dotted key (`train.epochs: ...`)."""


def require(cond: bool, key: str, expected: str, got: Any) -> None:
    """Raise `ConfigError("KEY: expected EXPECTED, got GOT")` unless `cond` (value checks of configs)."""
    if not cond:
        raise ConfigError(f"{key}: expected {expected}, got {got!r}")


MIN_IMAGE_SIDE = 16  # px: the smallest model input side (CLAHE tiles, encoder strides)


def check_image_size(value: Any, key: str = "image_size", *, stride: int = 1, why: str = "") -> tuple[int, int]:
    """The one check of a model input size: (H, W) as two ints >= MIN_IMAGE_SIDE, each divisible by
    `stride` (a network's output stride; `why` says whose). Returns (H, W); ConfigError naming `key`."""
    expected = f"(height, width) ints >= {MIN_IMAGE_SIDE}"
    if stride > 1:
        expected += f", divisible by {stride}{' ' + why if why else ''}"
    pair = tuple(value) if isinstance(value, (list, tuple)) else None
    if pair is None or len(pair) != 2 or not all(
            isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in pair):
        raise ConfigError(f"{key}: expected {expected}, got {value!r}")
    h, w = int(pair[0]), int(pair[1])
    require(min(h, w) >= MIN_IMAGE_SIDE and h % stride == 0 and w % stride == 0, key, expected, (h, w))
    return h, w


def check_input_settings(settings: Any, prefix: str) -> None:
    """The one check of a model input's settings beyond its size (`DataConfig`, `Preprocessing`): the CLAHE
    clip limit and tiles (each tile at least 2 x 2 pixels of `image_size`). ConfigError naming `prefix.key`."""
    check_image_size(settings.image_size, f"{prefix}.image_size")
    size, tiles = settings.image_size, settings.clahe_tiles
    require(settings.clahe_clip >= 0, f"{prefix}.clahe_clip", "a number >= 0", settings.clahe_clip)
    require(min(tiles) >= 1, f"{prefix}.clahe_tiles", "positive ints", tiles)
    require(not settings.clahe or all(s >= 2 * t for s, t in zip(size, tiles)), f"{prefix}.clahe_tiles",
            f"tiles of at least 2 pixels for image_size {size}", tiles)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if tp is type(None):
        return "null"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin in (tuple, list):
        args = typing.get_args(tp)
        if origin is list or args[1:] == (Ellipsis,):
            return f"a list of {_type_name(args[0])}"
        return f"a list of {len(args)} ({', '.join(_type_name(a) for a in args)})"
    if dataclasses.is_dataclass(tp):
        return f"a mapping ({tp.__name__})"
    return {int: "an int", float: "a float", bool: "a bool (true/false)", str: "a string"}.get(tp, str(tp))


def _got(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def _wrong(tp: Any, value: Any, key: str) -> ConfigError:
    return ConfigError(f"{key}: expected {_type_name(tp)}, got {_got(value)}")


def _convert(tp: Any, value: Any, key: str) -> Any:
    """`value` checked against annotation `tp` and converted (lists -> tuples, numpy -> Python scalars)."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise _wrong(tp, value, key)
        return from_dict(tp, value, prefix=key)
    if tp is type(None):
        if value is None:
            return None
        raise _wrong(tp, value, key)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            if len(args) < len(typing.get_args(tp)):
                return None
            raise _wrong(tp, value, key)
        for arg in args:
            try:
                return _convert(arg, value, key)
            except ConfigError as err:
                if len(args) == 1:
                    raise err from None
        raise _wrong(tp, value, key)
    if origin is Literal:
        for a in typing.get_args(tp):  # `True == 1`: a bool never matches a non-bool choice
            if value == a and isinstance(value, type(a)) and isinstance(value, bool) == isinstance(a, bool):
                return a
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise _wrong(tp, value, key)
        args = typing.get_args(tp)
        if origin is list or args[1:] == (Ellipsis,):
            items = [_convert(args[0], v, f"{key}[{i}]") for i, v in enumerate(value)]
        elif len(value) != len(args):
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {len(value)} items {list(value)!r}")
        else:
            items = [_convert(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value))]
        return tuple(items) if origin is tuple else items
    if tp is bool and isinstance(value, bool):
        return value
    if tp is int and isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if tp is float:
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _EXP_NUMERAL.fullmatch(value.strip()):
            return float(value)
    if tp is str and isinstance(value, str):
        return str(value)
    if tp not in (bool, int, float, str):
        raise TypeError(f"{key}: unsupported config annotation {tp!r}")
    raise _wrong(tp, value, key)


@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    """{field name: resolved annotation} of the `__init__` fields of dataclass `cls`."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def _unknown(key: str, prefix: str, cls: type) -> ConfigError:
    where = f" of {prefix}" if prefix else ""
    return ConfigError(f"{key}: unknown key; valid keys{where}: {', '.join(sorted(_hints(cls)))}")


def _build(cls: type, kwargs: dict, prefix: str) -> Any:
    """`cls(**kwargs)`; a ValueError of its `__post_init__` becomes a ConfigError placed under `prefix`."""
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as err:
        msg = str(err)
        head = msg.split(":", 1)[0].strip()
        if not prefix or head == prefix or head.startswith(prefix + "."):
            raise ConfigError(msg) from err
        if head.split("[")[0] in _hints(cls):  # a message relative to the dataclass ("rate: ...")
            raise ConfigError(f"{prefix}.{msg}") from err
        raise ConfigError(f"{prefix}: {msg}") from err


def from_dict(cls: type, data: dict | None, prefix: str = "") -> Any:
    """Build dataclass `cls` from the mapping `data` (None = all defaults), recursively.

    Unknown keys, wrong types and values refused by `__post_init__` raise `ConfigError` naming the
    dotted key (`prefix.key`). Ints are accepted for floats, lists become tuples where the field is a
    tuple, `Literal[...]` fields only take their listed values.
    """
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or cls.__name__}: expected a mapping ({cls.__name__}), got {_got(data)}")
    hints = _hints(cls)
    kwargs = {}
    for name, value in data.items():
        name = _current_name(cls, str(name), data, prefix)
        key = _join(prefix, name)
        if name not in hints:
            raise _unknown(key, prefix, cls)
        kwargs[name] = _convert(hints[name], value, key)
    return _build(cls, kwargs, prefix)


def former_names(cls: type) -> dict[str, str]:
    """{former field name: current name} of a config class (its `FORMER_NAMES`, read for one release)."""
    return dict(getattr(cls, "FORMER_NAMES", {}))


def _current_name(cls: type, name: str, data: dict, prefix: str) -> str:
    """`name`, or the current name of a former one (a DeprecationWarning; ConfigError when both are given)."""
    new = former_names(cls).get(name)
    if new is None:
        return name
    if new in data:
        raise ConfigError(f"{_join(prefix, name)}: the former name of {_join(prefix, new)}; give only {new!r}")
    warnings.warn(f"{_join(prefix, name)} is read as {_join(prefix, new)} (renamed; the former name is read until "
                  "the next release)", DeprecationWarning, stacklevel=4)
    return new


def check_fields(cfg: Any, prefix: str = "") -> None:
    """Check and convert every field of dataclass instance `cfg` in place (call from `__post_init__`)."""
    for name, tp in _hints(type(cfg)).items():
        setattr(cfg, name, _convert(tp, getattr(cfg, name), _join(prefix, name)))


def replace_paths(cfg: Any, changes: dict[str, Any], prefix: str = "") -> Any:
    """A copy of dataclass tree `cfg` with `{"section.key": value}` changes, checked like `from_dict`.

    Unchanged sub-configs are shared with `cfg` (as `dataclasses.replace` does).
    """
    cls = type(cfg)
    hints = _hints(cls)
    kwargs = {name: getattr(cfg, name) for name in hints}
    nested: dict[str, dict[str, Any]] = {}
    for path, value in changes.items():
        name, _, rest = path.partition(".")
        key = _join(prefix, name)
        if name not in hints:
            raise _unknown(key, prefix, cls)
        if rest:
            nested.setdefault(name, {})[rest] = value
        else:
            kwargs[name] = _convert(hints[name], value, key)
    for name, sub in nested.items():
        key = _join(prefix, name)
        if not dataclasses.is_dataclass(kwargs[name]):
            raise ConfigError(f"{key}: is {kwargs[name]!r}, not a section (change {next(iter(sub))!r})")
        kwargs[name] = replace_paths(kwargs[name], sub, key)
    return _build(cls, kwargs, prefix)


def to_dict(cfg: Any) -> Any:
    """A dataclass tree as plain YAML-safe data (tuples -> lists)."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, (list, tuple)):
        return [to_dict(v) for v in cfg]
    return cfg


def _deep_merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for k, v in update.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_config_dict(path: str | os.PathLike, _seen: tuple[str, ...] = ()) -> dict:
    """The raw mapping of a YAML config file with its `base:` chain merged in (paths relative to the file)."""
    path = os.fspath(path)
    path = path if _is_url(path) else os.path.abspath(path)
    if path in _seen:
        raise ConfigError(f"base: circular base chain: {' -> '.join(_seen + (path,))}")
    text = _read_text(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(f"base: expected a file name (relative to {os.path.dirname(path)}), got {base!r}")
    return _deep_merge(read_config_dict(os.path.join(os.path.dirname(path), base), _seen + (path,)), data)


def apply_overrides(data: dict, overrides: list[str] | tuple[str, ...] | None) -> dict:
    """Apply `section.key=value` strings (value parsed with `yaml.safe_load`) to a copy of a config mapping."""
    data = copy.deepcopy(data)
    for item in overrides or ():
        if not isinstance(item, str) or "=" not in item:
            raise ConfigError(f"override {item!r}: expected 'section.key=value'")
        dotted, raw = item.split("=", 1)
        dotted = dotted.strip()
        parts = dotted.split(".")
        if not dotted or any(not p for p in parts):
            raise ConfigError(f"override {item!r}: expected 'section.key=value'")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as err:
            raise ConfigError(f"{dotted}: cannot parse override value {raw!r}: {err}") from err
        node = data
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"{'.'.join(parts[:i + 1])}: is a value, not a section (override {item!r})")
            node = child
        node[parts[-1]] = value
    return data


def add_override_argument(parser, help: str = "override a config value (YAML syntax)") -> None:
    """`--set SECTION.KEY=VALUE ...` (several per flag, flag repeatable) into `args.overrides`."""
    parser.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[],
                        metavar="SECTION.KEY=VALUE", help=f"{help}, e.g. --set train.epochs=1 data.clahe=false")


def save_config(cfg: Any, path: str | os.PathLike) -> None:
    """Write the config tree `cfg` as YAML (no `base:`), reloadable with `read_config_dict` + `from_dict`."""
    _write_text_atomic(os.fspath(path), yaml.safe_dump(to_dict(cfg), sort_keys=False, default_flow_style=None))


# Config files may live on any TensorFlow filesystem (gs://...): URLs go through tf.io.gfile (imported only
# then), local paths through the builtins. (`seg4reg_tf.fileio` is the package's way; this layer-0 module
# may not import it.)
def _is_url(path: str) -> bool:
    return "://" in path


def _read_text(path: str) -> str:
    """A config file's UTF-8 text; ConfigError naming it when missing or unreadable."""
    try:
        if _is_url(path):
            import tensorflow as tf

            if not tf.io.gfile.exists(path) or tf.io.gfile.isdir(path):
                raise FileNotFoundError(path)
            with tf.io.gfile.GFile(path, "rb") as f:
                raw = f.read()
        else:
            if not os.path.isfile(path):
                raise FileNotFoundError(path)
            with open(path, "rb") as f:
                raw = f.read()
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except Exception as err:  # noqa: BLE001 - OSError or tf.errors.OpError: name the file
        raise ConfigError(f"{path}: cannot read the config file ({type(err).__name__}: {err})") from err
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not a UTF-8 text file ({err})") from err


def _write_text_atomic(path: str, text: str) -> None:
    """Write `text` to a temporary file beside `path` and rename it into place (never a torn config)."""
    parent = os.path.dirname(path if _is_url(path) else os.path.abspath(path))
    tmp = os.path.join(parent, f".incoming.{os.path.basename(path)}")
    if _is_url(path):
        import tensorflow as tf

        tf.io.gfile.makedirs(parent)
        with tf.io.gfile.GFile(tmp, "wb") as f:
            f.write(text.encode("utf-8"))
        tf.io.gfile.rename(tmp, path, overwrite=True)
        return
    os.makedirs(parent, exist_ok=True)
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
