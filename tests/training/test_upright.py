"""The upright check of a trained model (issue 21: upside-down films): `train()` fits it on the training
images after the fit; a model trained without one gets one with the same network (`with_upright_check`)."""
from __future__ import annotations

import json
import os

import keras
import numpy as np
import pytest

from seg4reg_tf.data.sources import training_splits
from seg4reg_tf.models import build_model
from seg4reg_tf.models.upright_probe import fit_upright_probe
from seg4reg_tf.training.config import config_from_dict
from seg4reg_tf.training.upright import fit_upright_check, training_images, with_upright_check
from tests.fixtures import TINY_SIZE, tiny_experiment, tiny_model_config


def test_a_model_given_an_upright_check_answers_as_before():
    model = build_model(tiny_model_config(geometry_head=True), TINY_SIZE)
    x = {"image": np.random.default_rng(0).random((2, *TINY_SIZE, 1), dtype=np.float32)}
    before = model(x, training=False)
    assert "upright_margin" not in before
    checked = with_upright_check(model)
    after = checked(x, training=False)
    assert checked is not model and checked.cfg.upright_check and model.upright is None
    for key, value in before.items():
        np.testing.assert_array_equal(np.asarray(after[key]), np.asarray(value), err_msg=key)
    np.testing.assert_array_equal(np.asarray(after["upright_margin"]), 1.0)  # unfitted: every film passes
    assert with_upright_check(checked) is checked
    with pytest.raises(ValueError, match="upright_check is false"):
        fit_upright_check(model, x["image"])


def test_fine_tuning_a_model_without_the_check_into_one_with_it_keeps_every_network_weight(tmp_path):
    from seg4reg_tf.training.train import load_init_weights

    plain = build_model(tiny_model_config(geometry_head=True), TINY_SIZE)
    rng = np.random.default_rng(0)
    for w in plain.weights:  # weights no fresh model has
        w.assign(rng.normal(size=w.shape).astype(w.dtype) * 0.01)
    plain.save(tmp_path / "plain.keras")
    model = build_model(tiny_model_config(geometry_head=True, upright_check=True), TINY_SIZE)
    model({"image": np.zeros((1, *TINY_SIZE, 1), "float32")})
    probe = [np.array(v) for v in model.upright.weights]
    load_init_weights(model, str(tmp_path / "plain.keras"))
    network = [v for v in model.weights if id(v) not in {id(u) for u in model.upright.weights}]
    assert len(network) == len(plain.weights)
    for a, b in zip(plain.weights, network):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for a, b in zip(probe, model.upright.weights):  # the check stays unfitted until training fits it
        np.testing.assert_array_equal(a, np.asarray(b))


@pytest.mark.slow  # a one-step training
def test_training_fits_the_upright_check_on_the_unaugmented_training_images(tiny_data, tmp_path):
    from seg4reg_tf.training.train import train

    cfg = config_from_dict(tiny_experiment({
        "name": "tiny_upright", "model": {"upright_check": True},
        "data": {"augment": {"enabled": True, "hflip_prob": 0.5}},
        "train": {"epochs": 1, "steps_per_epoch": 1, "val_steps": 1}}))
    run = str(tmp_path / "run")
    summary = train(cfg, tiny_data, run)
    assert summary["upright_check"]["n_train"] == 8 and summary["upright_check"]["n_val"] == 2
    assert set(summary["upright_check"]["validation_errors"]) == {"upright", "mirrored", "rotated", "flipped"}
    with open(os.path.join(run, "train_summary.json")) as f:
        assert json.load(f)["upright_check"] == summary["upright_check"]

    model = keras.saving.load_model(os.path.join(run, "model.keras"), compile=False)
    train_images, val_images = training_images(cfg.data, *training_splits(tiny_data))
    mean, scale, kernel, bias = fit_upright_probe(train_images)  # the fit on the plain training images
    z = (np.asarray(model.upright.thumbnails(val_images)) - mean) / scale
    np.testing.assert_allclose(np.asarray(model({"image": val_images}, training=False)["upright_margin"]),
                               z @ kernel + bias, rtol=1e-4, atol=1e-4)
