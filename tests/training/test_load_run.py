"""load_run: a changed head / tta is a new model (never the loaded one mutated); the run's input contract."""
from __future__ import annotations

import keras
import numpy as np
import pytest

from seg4reg_tf import models
from seg4reg_tf.training import config as training_config
from seg4reg_tf.training.run import RunStateError, load_run
from tests.fixtures import (
    TINY_SIZE,
    box_spine_batch,
    set_seed,
    strip_preprocessing,
    tiny_data_config,
    tiny_model_config,
)


def make_run(path, data=None, contract=None, **model_kw):
    """A run directory: config.yaml and model.keras (built with `contract`, default the config's data)."""
    cfg = training_config.ExperimentConfig(name="tiny", data=data or tiny_data_config(clahe=True, clahe_tiles=(4, 4)),
                                           model=tiny_model_config(**model_kw))
    set_seed(0)
    model = models.build_model(cfg.model, contract or cfg.data)
    path.mkdir()
    training_config.save_config(cfg, path / "config.yaml")
    model.save(path / "model.keras")
    return cfg, model


@pytest.mark.numeric
def test_head_and_tta_rebuild_the_model_and_its_saves_agree(tmp_path):
    cfg, trained = make_run(tmp_path / "run")
    loaded_cfg, model = load_run(tmp_path / "run", tta="flip", head="image")
    assert loaded_cfg.model.tta == "flip" and loaded_cfg.model.head == "image"
    assert model.cfg == loaded_cfg.model  # the model is what the returned config says ...
    assert model.get_config()["model_config"] == loaded_cfg.model.to_dict()
    model.save(tmp_path / "flip.keras")  # ... and so is its save
    assert keras.models.load_model(tmp_path / "flip.keras").cfg == loaded_cfg.model
    x = box_spine_batch(2)[0]
    got = np.asarray(model({"image": x}, training=False)["cobb_angles"])
    image = lambda a: np.asarray(trained({"image": a}, training=False)["cobb_angles_image"])  # noqa: E731
    np.testing.assert_allclose(got, 0.5 * (image(x) + image(x[:, :, ::-1])), atol=1e-4)  # weights kept

    _, unchanged = load_run(tmp_path / "run")
    assert unchanged.cfg == cfg.model and unchanged.preprocessing == models.Preprocessing.of(cfg.data)


def test_a_model_saved_without_a_contract_gets_its_runs(tmp_path):
    cfg, _ = make_run(tmp_path / "run")
    strip_preprocessing(tmp_path / "run" / "model.keras")
    assert keras.models.load_model(tmp_path / "run" / "model.keras").preprocessing is None
    _, model = load_run(tmp_path / "run")
    assert model.preprocessing == models.Preprocessing.of(cfg.data) and model.image_size == TINY_SIZE
    with pytest.raises(ValueError, match=r"compile=True .*\(it carries no preprocessing\)"):
        load_run(tmp_path / "run", compile=True)


def test_a_model_whose_contract_contradicts_config_yaml_is_refused(tmp_path):
    make_run(tmp_path / "run", contract=tiny_data_config(clahe=False))
    with pytest.raises(RunStateError, match=r"model.keras: the model's preprocessing differs from .*config.yaml's data "
                                            r"section \(preprocessing.clahe: False != True"):
        load_run(tmp_path / "run")
