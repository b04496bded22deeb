"""The input contract a model carries (`models.preprocessing.Preprocessing`) and the one image-size check."""
from __future__ import annotations

import dataclasses
import re

import keras
import numpy as np
import pytest

from seg4reg_tf.config_machinery import ConfigError, from_dict
from seg4reg_tf.data.config import DataConfig
from seg4reg_tf.models import Preprocessing, Seg4RegPlus, build_model
from tests.fixtures import TINY_SIZE, box_spine_batch, tiny_data_config, tiny_model_config


def test_build_model_carries_the_data_configs_preprocessing_through_save_and_load(tmp_path):
    data = tiny_data_config(clahe=True, clahe_clip=2.0, clahe_tiles=(4, 2))
    model = build_model(tiny_model_config(), data)
    assert model.preprocessing == Preprocessing(image_size=TINY_SIZE, clahe=True, clahe_clip=2.0, clahe_tiles=(4, 2))
    assert model.image_size == TINY_SIZE
    assert model.get_config()["preprocessing"] == {"image_size": [64, 32], "clahe": True, "clahe_clip": 2.0,
                                                   "clahe_tiles": [4, 2], "normalization": "unit"}
    model.save(tmp_path / "m.keras")
    assert keras.models.load_model(tmp_path / "m.keras").preprocessing == model.preprocessing
    # an (H, W) pair: the documented defaults (DataConfig's: CLAHE on, clip 3, 8 x 8 tiles)
    default = Preprocessing.of(DataConfig(image_size=TINY_SIZE))
    assert build_model(tiny_model_config(), TINY_SIZE).preprocessing == default


def test_a_model_saved_before_the_contract_loads_without_one():
    config = build_model(tiny_model_config(), tiny_data_config()).get_config()
    del config["preprocessing"]  # what a .keras file of an older version holds
    old = Seg4RegPlus.from_config(config)
    assert old.preprocessing is None and old.image_size == TINY_SIZE


def test_cfg_is_read_only_and_with_config_builds_a_new_model(tmp_path):
    model = build_model(tiny_model_config(), tiny_data_config())
    with pytest.raises(AttributeError):
        model.cfg = dataclasses.replace(model.cfg, head="image")
    image_head = model.with_config(model_config=dataclasses.replace(model.cfg, head="image"))
    assert image_head is not model and model.cfg.head == "auto" and image_head.cfg.head == "image"
    assert image_head.preprocessing == model.preprocessing
    x = box_spine_batch(2)[0]
    a, b = model({"image": x}, training=False), image_head({"image": x}, training=False)
    np.testing.assert_array_equal(np.asarray(b["cobb_angles_image"]), np.asarray(a["cobb_angles_image"]))  # weights
    np.testing.assert_array_equal(np.asarray(b["cobb_angles"]), np.asarray(b["cobb_angles_image"]))
    image_head.save(tmp_path / "m.keras")  # its saves say what it is
    assert keras.models.load_model(tmp_path / "m.keras").cfg.head == "image"
    with pytest.raises(ValueError):  # another architecture cannot take these weights
        model.with_config(model_config=dataclasses.replace(model.cfg, reg_width=8))


def test_contract_errors_name_the_field():
    with pytest.raises(ValueError, match=r"^image_size: \(128, 64\) differs from preprocessing.image_size \(64, 32\)"):
        Seg4RegPlus(tiny_model_config(), image_size=(128, 64), preprocessing=tiny_data_config())
    with pytest.raises(ConfigError, match=r"^preprocessing.clahe_tiles: expected tiles of at least 2 pixels"):
        Preprocessing(image_size=(64, 32), clahe=True, clahe_tiles=(8, 32))
    with pytest.raises(ConfigError, match=r"^preprocessing.normalization: expected one of 'unit', got 'zscore'"):
        Preprocessing.of({"normalization": "zscore"})  # a scale this version does not know is refused
    with pytest.raises(ConfigError, match=r"^preprocessing.tiles: unknown key"):
        Preprocessing.of({"tiles": [8, 8]})
    with pytest.raises(ConfigError, match=r"^preprocessing: expected a Preprocessing, its dict or a DataConfig, "
                                          r"got tuple"):
        Preprocessing.of((64, 32))


@pytest.mark.parametrize("key, make", [
    ("data.image_size", lambda hw: DataConfig(image_size=hw)),
    ("preprocessing.image_size", lambda hw: Preprocessing(image_size=hw)),
    ("image_size", lambda hw: Seg4RegPlus(tiny_model_config(), image_size=hw)),
    ("space.image_sizes[0]", lambda hw: _search_space(image_sizes=(hw,))),
])
def test_one_image_size_check_everywhere(key, make):
    """data/config, the model, its contract and the tuner's search space all call config_machinery.check_image_size."""
    for bad in ((8, 64), (64, 15)):
        with pytest.raises(ConfigError, match="^" + re.escape(f"{key}: expected (height, width) ints >= 16") + ".*"
                                              + re.escape(f", got {bad}")):
            make(bad)


@pytest.mark.parametrize("settings, message", [
    ({"clahe_clip": -1.0}, "clahe_clip: expected a number >= 0, got -1.0"),
    ({"clahe_tiles": (0, 8)}, "clahe_tiles: expected positive ints, got (0, 8)"),
    ({"clahe": True, "clahe_tiles": (8, 32)}, "clahe_tiles: expected tiles of at least 2 pixels for image_size "
                                              "(64, 32), got (8, 32)"),
])
def test_one_clahe_check_for_the_data_config_and_the_contract(settings, message):
    """DataConfig and Preprocessing check their CLAHE settings with the same rules
    (`config_machinery.check_input_settings`)."""
    for prefix, make in (("data", DataConfig), ("preprocessing", Preprocessing)):
        with pytest.raises(ConfigError, match="^" + re.escape(f"{prefix}.{message}") + "$"):
            make(image_size=(64, 32), **settings)
    Preprocessing(image_size=(64, 32), clahe=False, clahe_tiles=(8, 32))  # tiles too small matter only with CLAHE
    DataConfig(image_size=(64, 32), clahe=False, clahe_tiles=(8, 32))


def test_the_image_size_check_refuses_what_is_not_two_ints():
    for bad in ((64,), (64.0, 32), (True, 64), "64x32", 64):
        with pytest.raises(ConfigError, match=r"^image_size: expected \(height, width\) ints >= 16"):
            Seg4RegPlus(tiny_model_config(), image_size=bad)


def _search_space(**kw):
    from seg4reg_tf.tuning.hypermodel import SearchSpace

    return from_dict(SearchSpace, kw, prefix="space")
