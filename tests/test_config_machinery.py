"""The config machinery: conversion and its errors, direct construction, `base:` files, overrides, typed replace."""
from __future__ import annotations

import argparse
import dataclasses
from typing import Literal, Optional, Union

import numpy as np
import pytest
import yaml

from seg4reg_tf.config_machinery import (
    ConfigError,
    add_override_argument,
    apply_overrides,
    check_fields,
    from_dict,
    read_config_dict,
    replace_paths,
    save_config,
    to_dict,
)


@dataclasses.dataclass
class _Inner:
    size: tuple[int, int] = (4, 2)
    rate: float = 0.5
    mode: Literal["a", "b"] = "a"
    flag: bool = False

    def __post_init__(self):  # a message relative to the dataclass, placed in the tree by the converter
        if self.rate > 1:
            raise ValueError(f"rate: expected <= 1, got {self.rate}")


@dataclasses.dataclass
class _Outer:
    name: str = "x"
    count: Optional[int] = None
    inner: _Inner = dataclasses.field(default_factory=_Inner)
    ids: list[int] = dataclasses.field(default_factory=list)
    tags: tuple[str, ...] = ()
    pair: Optional[tuple[float, float]] = None
    either: Union[int, str] = 0


@dataclasses.dataclass
class _Checked:
    """Checks itself on direct construction, as the experiment configs do."""

    width: int = 4
    scale: float = 1.0
    sub: _Inner = dataclasses.field(default_factory=_Inner)

    def __post_init__(self):
        check_fields(self, "sec")
        if self.width < 1:
            raise ConfigError(f"sec.width: expected a positive int, got {self.width}")


def _write(path, data):
    path.write_text(yaml.safe_dump(data))
    return path


def test_converts_nested_lists_ints_and_optionals():
    cfg = from_dict(_Outer, {"count": 3, "inner": {"size": [8, 6], "rate": 1, "mode": "b", "flag": True},
                             "ids": [1, 2], "tags": ["p", "q"], "pair": [1, 2.5], "either": "w"})
    assert cfg.inner.size == (8, 6) and isinstance(cfg.inner.size, tuple)
    assert cfg.inner.rate == 1.0 and isinstance(cfg.inner.rate, float)
    assert cfg.count == 3 and cfg.inner.mode == "b" and cfg.inner.flag is True
    assert cfg.ids == [1, 2] and isinstance(cfg.ids, list)
    assert cfg.tags == ("p", "q") and cfg.pair == (1.0, 2.5) and cfg.either == "w"
    assert from_dict(_Outer, {"count": None, "pair": None}) == _Outer()
    assert from_dict(_Outer, None) == _Outer()


def test_floats_accept_yaml_exponent_strings_and_numpy_scalars_become_python():
    cfg = from_dict(_Outer, yaml.safe_load("inner: {rate: 1e-1}\ncount: 2"))  # YAML 1.1 reads 1e-1 as a string
    assert cfg.inner.rate == 0.1
    cfg = from_dict(_Outer, {"count": np.int64(7), "inner": {"rate": np.float32(0.25), "mode": np.str_("b")},
                             "ids": [np.int32(5)]})
    assert (cfg.count, cfg.inner.rate, cfg.inner.mode, cfg.ids) == (7, 0.25, "b", [5])
    assert type(cfg.count) is int and type(cfg.inner.rate) is float and type(cfg.ids[0]) is int
    assert type(cfg.inner.mode) is str


@pytest.mark.parametrize("data, key, words", [
    ({"inner": {"sise": [1, 2]}}, "inner.sise", ["unknown key", "size", "rate", "mode", "flag"]),
    ({"bogus": 1}, "bogus", ["unknown key", "count", "inner", "name"]),
    ({"inner": {"rate": "fast"}}, "inner.rate", ["float", "str"]),
    ({"inner": {"rate": "1"}}, "inner.rate", ["float", "'1'"]),  # only exponent numerals are YAML's strings
    ({"inner": {"size": [1.5, 2]}}, "inner.size[0]", ["int", "1.5"]),
    ({"inner": {"size": [1, 2, 3]}}, "inner.size", ["3 items"]),
    ({"inner": {"size": 4}}, "inner.size", ["list of 2"]),
    ({"inner": {"mode": "c"}}, "inner.mode", ["'a'", "'b'", "'c'"]),
    ({"inner": {"mode": True}}, "inner.mode", ["'a'", "True"]),
    ({"inner": {"flag": 1}}, "inner.flag", ["bool", "1"]),
    ({"count": 2.5}, "count", ["int", "2.5"]),
    ({"count": True}, "count", ["int", "True"]),
    ({"name": 3}, "name", ["string"]),
    ({"name": None}, "name", ["string", "None"]),
    ({"inner": 5}, "inner", ["mapping"]),
    ({"ids": [1, "x"]}, "ids[1]", ["int", "'x'"]),
    ({"tags": "pq"}, "tags", ["list of a string"]),
    ({"pair": [1, "z"]}, "pair[1]", ["float", "'z'"]),
    ({"either": 1.5}, "either", ["an int or a string", "1.5"]),
    ({"inner": {"rate": 2}}, "inner.rate", ["<= 1"]),  # the dataclass's own check, placed in the tree
])
def test_errors_start_with_the_dotted_key(data, key, words):
    with pytest.raises(ConfigError) as err:
        from_dict(_Outer, data)
    msg = str(err.value)
    assert msg.startswith(key + ":"), msg
    for w in words:
        assert w in msg, msg


def test_prefix_names_the_place_of_the_section():
    with pytest.raises(ConfigError, match=r"^space\.inner\.flag: expected a bool"):
        from_dict(_Outer, {"inner": {"flag": "yes"}}, prefix="space")
    with pytest.raises(ConfigError, match=r"^space: expected a mapping \(_Outer\), got list"):
        from_dict(_Outer, [1], prefix="space")


def test_direct_construction_runs_the_same_converter():
    c = _Checked(width=np.int64(8), scale=2, sub={"size": [6, 3]})
    assert (c.width, c.scale, c.sub) == (8, 2.0, _Inner(size=(6, 3)))
    assert type(c.width) is int and type(c.scale) is float
    with pytest.raises(ConfigError, match=r"^sec\.width: expected an int, got str '8'"):
        _Checked(width="8")
    with pytest.raises(ConfigError, match=r"^sec\.sub\.mode: expected one of 'a', 'b', got 'z'"):
        _Checked(sub={"mode": "z"})
    with pytest.raises(ConfigError, match=r"^sec\.width: expected a positive int, got 0"):
        _Checked(width=0)


def test_replace_paths_is_typed_checked_and_leaves_the_original():
    base = _Checked()
    new = replace_paths(base, {"width": 12, "sub.size": [10, 5], "sub.rate": 1})
    assert (new.width, new.sub.size, new.sub.rate) == (12, (10, 5), 1.0)
    assert type(new.sub.rate) is float
    assert base == _Checked() and new.scale == 1.0 and new.sub.mode == "a"
    assert replace_paths(base, {}) == base


@pytest.mark.parametrize("changes, match", [
    ({"width": "wide"}, r"^sec\.width: expected an int, got str 'wide'"),
    ({"width": -1}, r"^sec\.width: expected a positive int, got -1"),
    ({"sub.rate": 3.0}, r"^sec\.sub\.rate: expected <= 1"),
    ({"sub.size": [1]}, r"^sec\.sub\.size: expected a list of 2"),
    ({"sub.colour": 1}, r"^sec\.sub\.colour: unknown key; valid keys of sec\.sub: flag, mode, rate, size"),
    ({"width.x": 1}, r"^sec\.width: is 4, not a section"),
])
def test_replace_paths_rejects_bad_changes_naming_the_key(changes, match):
    with pytest.raises(ConfigError, match=match):
        replace_paths(_Checked(), changes, prefix="sec")


def test_base_chain_merges_nested_sections_and_refuses_cycles(tmp_path):
    _write(tmp_path / "a.yaml", {"name": "a", "inner": {"rate": 0.2, "mode": "b"}, "count": 1})
    (tmp_path / "sub").mkdir()
    _write(tmp_path / "sub" / "b.yaml", {"base": "../a.yaml", "inner": {"rate": 0.7}})
    _write(tmp_path / "c.yaml", {"base": "sub/b.yaml", "name": "c"})
    assert read_config_dict(tmp_path / "c.yaml") == {"name": "c", "inner": {"rate": 0.7, "mode": "b"}, "count": 1}
    _write(tmp_path / "x.yaml", {"base": "y.yaml"})
    _write(tmp_path / "y.yaml", {"base": "x.yaml"})
    with pytest.raises(ConfigError, match="^base: circular"):
        read_config_dict(tmp_path / "x.yaml")
    with pytest.raises(ConfigError, match="not found"):
        read_config_dict(tmp_path / "nope.yaml")
    _write(tmp_path / "l.yaml", [1, 2])
    with pytest.raises(ConfigError, match="expected a mapping at the top level"):
        read_config_dict(tmp_path / "l.yaml")
    _write(tmp_path / "n.yaml", {"base": 3})
    with pytest.raises(ConfigError, match="^base: expected a file name"):
        read_config_dict(tmp_path / "n.yaml")


def test_overrides_parse_yaml_values_into_a_copy():
    data = {"inner": {"rate": 0.5}, "name": "x"}
    out = apply_overrides(data, ["inner.rate=1e-1", "inner.size=[3, 2]", "count=null", "name= y z",
                                 "new.deep.key=true", "name2="])
    assert out == {"inner": {"rate": "1e-1", "size": [3, 2]}, "name": "y z", "count": None,
                   "new": {"deep": {"key": True}}, "name2": ""}
    assert data == {"inner": {"rate": 0.5}, "name": "x"}
    assert from_dict(_Outer, {k: v for k, v in out.items() if k in ("inner", "name")}).inner.rate == 0.1


@pytest.mark.parametrize("override, match", [
    ("inner", r"expected 'section.key=value'"),
    ("=3", r"expected 'section.key=value'"),
    ("inner..rate=1", r"expected 'section.key=value'"),
    ("name.x=1", r"^name: is a value, not a section"),
    ("inner.rate=[1", r"^inner\.rate: cannot parse override value"),
])
def test_bad_overrides_are_refused(override, match):
    with pytest.raises(ConfigError, match=match):
        apply_overrides({"name": "x", "inner": {}}, [override])


def test_set_argument_collects_overrides():
    p = argparse.ArgumentParser()
    add_override_argument(p)
    assert p.parse_args([]).overrides == []
    args = p.parse_args(["--set", "a.b=1", "c=[2, 3]", "--set", "d=x"])
    assert args.overrides == ["a.b=1", "c=[2, 3]", "d=x"]


def test_save_then_read_round_trip(tmp_path):
    cfg = _Outer(name="rt", count=2, inner=_Inner(size=(6, 4), rate=0.25, mode="b"), ids=[3], tags=("t",),
                 pair=(0.5, 1.5))
    assert to_dict(cfg) == {"name": "rt", "count": 2, "inner": {"size": [6, 4], "rate": 0.25, "mode": "b",
                                                                 "flag": False},
                            "ids": [3], "tags": ["t"], "pair": [0.5, 1.5], "either": 0}
    save_config(cfg, tmp_path / "out" / "c.yaml")
    assert from_dict(_Outer, read_config_dict(tmp_path / "out" / "c.yaml")) == cfg
