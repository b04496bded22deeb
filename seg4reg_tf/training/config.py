"""Typed experiment configs loaded from YAML (TF Model Garden style).

`from_dict(cls, data)` turns a plain dict into any tree of dataclasses, checking every key and type;
`load_config(path, overrides)` reads an experiment YAML (with an optional `base:` file it extends)
and applies `section.key=value` overrides; `save_config(cfg, path)` writes the resolved config.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import os
import re
import types
import typing
from typing import Any, Literal, Optional, Union

import yaml

from seg4reg_tf.data.config import DataConfig
from seg4reg_tf.models.config import ModelConfig

_NUMERAL = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


class ConfigError(ValueError):
    """A config problem; the message starts with the dotted key (`train.epochs: ...`)."""


# --------------------------------------------------------------------------------------------------
# the experiment-level dataclasses
# --------------------------------------------------------------------------------------------------
def _check(cond: bool, key: str, expected: str, got: Any) -> None:
    if not cond:
        raise ValueError(f"{key}: expected {expected}, got {got!r}")


@dataclasses.dataclass
class TrainConfig:
    """How to train. The per-replica batch is `data.batch_size`; global batch = that x replicas.

    Attributes:
        epochs: number of epochs (each `steps_per_epoch` steps, or a full pass when None).
        optimizer: "sgd" | "adam" | "adamw".
        learning_rate: peak learning rate.
        momentum: SGD momentum (ignored by Adam/AdamW).
        weight_decay: Keras (decoupled, lr-scaled) weight decay; 0 = off.
        schedule: "constant" | "step" (x `step_factor` every `step_epochs`) | "cosine" (to 0 at the end).
        step_epochs, step_factor: the step schedule.
        warmup_epochs: linear learning-rate warmup from 0 over this many epochs (0 = none).
        seed: global seed (`keras.utils.set_random_seed`), also seeds the data order.
        steps_per_epoch: training steps per epoch; None = one full pass over the training split.
        val_steps: validation steps; None = the whole validation split.
        clipnorm: gradient-norm clipping (None = off).
        strategy: "default" | "mirrored" | "multiworker" (overridable on the command line).
        checkpoint_monitor: the logged metric selecting `model.keras` (minimised).
    """

    epochs: int = 30
    optimizer: Literal["sgd", "adam", "adamw"] = "adam"
    learning_rate: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: Literal["constant", "step", "cosine"] = "cosine"
    step_epochs: int = 30
    step_factor: float = 0.1
    warmup_epochs: int = 0
    seed: int = 0
    steps_per_epoch: Optional[int] = None
    val_steps: Optional[int] = None
    clipnorm: Optional[float] = None
    strategy: Literal["default", "mirrored", "multiworker"] = "default"
    checkpoint_monitor: str = "val_smape"

    def __post_init__(self):
        _check(self.epochs >= 1, "train.epochs", "a positive int", self.epochs)
        _check(self.learning_rate > 0 and math.isfinite(self.learning_rate), "train.learning_rate",
               "a positive float", self.learning_rate)
        _check(0.0 <= self.momentum < 1.0, "train.momentum", "a float in [0, 1)", self.momentum)
        _check(self.weight_decay >= 0.0, "train.weight_decay", "a float >= 0", self.weight_decay)
        _check(self.step_epochs >= 1, "train.step_epochs", "a positive int", self.step_epochs)
        _check(0.0 < self.step_factor <= 1.0, "train.step_factor", "a float in (0, 1]", self.step_factor)
        _check(self.warmup_epochs >= 0, "train.warmup_epochs", "an int >= 0", self.warmup_epochs)
        _check(self.steps_per_epoch is None or self.steps_per_epoch >= 1, "train.steps_per_epoch",
               "a positive int or null", self.steps_per_epoch)
        _check(self.val_steps is None or self.val_steps >= 1, "train.val_steps", "a positive int or null",
               self.val_steps)
        _check(self.clipnorm is None or self.clipnorm > 0, "train.clipnorm", "a positive float or null",
               self.clipnorm)
        _check(bool(self.checkpoint_monitor), "train.checkpoint_monitor", "a metric name", self.checkpoint_monitor)


@dataclasses.dataclass
class SyntheticConfig:
    """A synthetic AASCE-format dataset that `seg4reg train` generates when `--data` is omitted."""

    n_train: int = 160
    n_test: int = 40
    seed: int = 0

    def __post_init__(self):
        _check(self.n_train >= 5, "synthetic.n_train", "an int >= 5 (the validation split is every 5th)",
               self.n_train)
        _check(self.n_test >= 0, "synthetic.n_test", "an int >= 0", self.n_test)


@dataclasses.dataclass
class ExperimentConfig:
    """One experiment: a name, the data, model and training sections, and an optional synthetic dataset."""

    name: str = "experiment"
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    synthetic: Optional[SyntheticConfig] = None

    def __post_init__(self):
        _check(bool(self.name) and "/" not in self.name, "name", "a non-empty name without '/'", self.name)


# --------------------------------------------------------------------------------------------------
# generic dict -> dataclass conversion
# --------------------------------------------------------------------------------------------------
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
        if not args or (len(args) == 2 and args[1] is Ellipsis):
            inner = _type_name(args[0]) if args else "any"
            return f"a list of {inner}"
        return f"a list of {len(args)} ({', '.join(_type_name(a) for a in args)})"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return f"a mapping ({tp.__name__})"
    if isinstance(tp, type):
        return {"int": "an int", "float": "a float", "bool": "a bool (true/false)", "str": "a string"}.get(
            tp.__name__, tp.__name__)
    return str(tp)


def _got(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def _convert(tp: Any, value: Any, key: str) -> Any:
    """Check and convert `value` to the annotated type `tp`; errors name `key`."""
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {_got(value)}")
        return from_dict(tp, value, prefix=key)
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{key}: expected null, got {_got(value)}")
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got null")
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, key)
            except ConfigError as err:
                errors.append(err)
        if len(errors) == 1:
            raise errors[0]
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {_got(value)}")
    if origin is Literal:
        allowed = typing.get_args(tp)
        # `True == 1` in Python: compare types too so a bool never matches an int choice
        for a in allowed:
            if value == a and type(value) is type(a):
                return a
        raise ConfigError(f"{key}: expected one of {', '.join(repr(a) for a in allowed)}, got {value!r}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {_got(value)}")
        args = typing.get_args(tp)
        if not args:
            items = list(value)
        elif origin is list or (len(args) == 2 and args[1] is Ellipsis):
            items = [_convert(args[0], v, f"{key}[{i}]") for i, v in enumerate(value)]
        else:
            if len(value) != len(args):
                raise ConfigError(f"{key}: expected {_type_name(tp)}, got {len(value)} items {list(value)!r}")
            items = [_convert(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value))]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {_got(value)}")
        kt, vt = (typing.get_args(tp) + (Any, Any))[:2]
        return {_convert(kt, k, f"{key}.{k}"): _convert(vt, v, f"{key}.{k}") for k, v in value.items()}
    if tp in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {_got(value)}")
        return tp(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected a bool (true/false), got {_got(value)}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected an int, got {_got(value)}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        # YAML 1.1 reads `1e-4` (no dot) as a string: accept plain numerals written that way
        if isinstance(value, str) and _NUMERAL.fullmatch(value.strip()):
            return float(value)
        raise ConfigError(f"{key}: expected a float, got {_got(value)}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {_got(value)}")
    if isinstance(tp, type):
        if isinstance(value, tp):
            return value
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {_got(value)}")
    return value


def from_dict(cls: type, data: dict | None, prefix: str = "") -> Any:
    """Build dataclass `cls` from `data` (a mapping), recursively.

    Unknown keys, wrong types and values refused by `__post_init__` raise `ConfigError` naming the
    full dotted key (`prefix.key`). Ints are accepted for floats, lists become tuples where the
    field is a tuple, `Literal[...]` fields only take their listed values.
    """
    data = {} if data is None else data
    where = prefix or cls.__name__
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping ({cls.__name__}), got {_got(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else str(name)
        if name not in fields:
            raise ConfigError(f"{key}: unknown key; valid keys{' of ' + prefix if prefix else ''}: "
                              f"{', '.join(sorted(fields))}")
        kwargs[name] = _convert(hints.get(name, Any), value, key)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (ValueError, TypeError) as err:
        msg = str(err)
        head = msg.split(":", 1)[0].strip()
        if not prefix or head.startswith(prefix + ".") or head == prefix:
            raise ConfigError(msg) from err
        # a nested config's own message ("width: expected ...") or a dotted one of another section
        # name ("model.width: ...") gets its place in the tree
        last = prefix.rsplit(".", 1)[-1]
        if head in fields:
            raise ConfigError(f"{prefix}.{msg}") from err
        if head.startswith(last + ".") and head.split(".", 1)[1].split("[")[0] in fields:
            raise ConfigError(f"{prefix.rsplit('.', 1)[0] + '.' if '.' in prefix else ''}{msg}") from err
        raise ConfigError(f"{prefix}: {msg}") from err


def to_dict(cfg: Any) -> Any:
    """A dataclass tree as plain YAML-safe data (tuples -> lists)."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, (list, tuple)):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, dict):
        return {k: to_dict(v) for k, v in cfg.items()}
    return cfg


# --------------------------------------------------------------------------------------------------
# YAML files, `base:` inheritance, overrides
# --------------------------------------------------------------------------------------------------
def _deep_merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def read_config_dict(path: str | os.PathLike, _seen: tuple[str, ...] = ()) -> dict:
    """The raw mapping of a config file with its `base:` chain merged in (paths relative to the file)."""
    path = os.path.abspath(os.fspath(path))
    if path in _seen:
        raise ConfigError(f"base: circular base chain: {' -> '.join(_seen + (path,))}")
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}")
    with open(path, encoding="utf-8") as f:
        try:
            data = yaml.safe_load(f)
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
    base_path = os.path.join(os.path.dirname(path), base)
    return _deep_merge(read_config_dict(base_path, _seen + (path,)), data)


def add_override_argument(parser, help: str = "override a config value (YAML syntax)") -> None:
    """`--set SECTION.KEY=VALUE ...` (several per flag, flag repeatable) into `args.overrides`."""
    parser.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[],
                        metavar="SECTION.KEY=VALUE", help=f"{help}, e.g. --set train.epochs=1 data.clahe=false")


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


def config_from_dict(data: dict, overrides: list[str] | None = None) -> ExperimentConfig:
    """An `ExperimentConfig` from a mapping plus overrides."""
    return from_dict(ExperimentConfig, apply_overrides(data, overrides))


def load_config(path: str | os.PathLike, overrides: list[str] | None = None) -> ExperimentConfig:
    """Load an experiment YAML (following `base:`), apply `section.key=value` overrides and validate.

    Raises:
        ConfigError (a ValueError) naming the dotted key for unknown keys, wrong types, bad values.
    """
    return config_from_dict(read_config_dict(path), overrides)


def save_config(cfg: ExperimentConfig, path: str | os.PathLike) -> None:
    """Write the resolved config (no `base:`), reloadable with `load_config`."""
    os.makedirs(os.path.dirname(os.path.abspath(os.fspath(path))), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(to_dict(cfg), f, sort_keys=False, default_flow_style=None)
