import numpy as np
import pytest

from seg4reg_tf.models.regression import RegressionNet
from tests.fixtures import TINY_SIZE

H, W = TINY_SIZE


def test_prior_sets_initial_angles_and_scale_reaches_beyond_90():
    r = RegressionNet((H, W, 1), width=4, depth=3, angle_prior=(38.7, 19.7, 156.0), angle_scale=180.0)
    # a blank image gives zero features after norm + ReLU, so the angles are the bias alone
    out = r(np.zeros((2, H, W, 1), "float32"))
    assert out["features"].shape == (2, H // 8, W // 8, 16)
    np.testing.assert_allclose(np.asarray(out["angles"]), [[38.7, 19.7, 156.0]] * 2, rtol=1e-4)


def test_config_round_trip_and_weights_file(tmp_path):
    r = RegressionNet((H, W, 1), width=4, depth=2, norm="batch", dropout=0.2, name="r1")
    clone = RegressionNet.from_config(r.get_config())
    assert clone.get_config() == r.get_config()
    path = str(tmp_path / "enc.weights.h5")
    r.encoder.save_weights(path)
    x = np.random.default_rng(0).random((2, H, W, 1)).astype("float32")
    loaded = RegressionNet((H, W, 1), width=4, depth=2, norm="batch", encoder_weights=path)
    np.testing.assert_allclose(np.asarray(loaded.features(x)), np.asarray(r.features(x)), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"model\.encoder_weights: file not found"):
        RegressionNet((H, W, 1), width=4, depth=2, encoder_weights=str(tmp_path / "missing.weights.h5"))


def test_densenet_encoder_single_channel():
    r = RegressionNet((64, 32, 1), encoder="densenet121")
    out = r(np.zeros((1, 64, 32, 1), "float32"))
    assert out["features"].shape == (1, 2, 1, 1024) and out["angles"].shape == (1, 3)


def test_bad_input_shape():
    r = RegressionNet((H, W, 1), width=4, depth=2)
    with pytest.raises(ValueError, match=r"RegressionNet: expected input \[B, H, W, 1\]"):
        r(np.zeros((1, H, W, 3), "float32"))
