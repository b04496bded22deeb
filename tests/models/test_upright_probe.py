"""The upright check: a closed-form linear probe that tells upright films from upside-down ones."""
from __future__ import annotations

import keras
import numpy as np
import pytest

from seg4reg_tf.models.upright_probe import UprightProbe, fit_upright_probe, orientations, upright_errors
from tests.fixtures import SEED_SHIFT


def _films(n, seed, size=(64, 32)):
    """Upright toy films: noise and random blobs over a body that brightens towards the bottom
    (the pelvis), with a dark band in the upper third (the lungs)."""
    rng = np.random.default_rng(seed)
    h, w = size
    y = np.linspace(0.0, 1.0, h)[:, None] * np.ones((1, w))
    x = np.linspace(-1.0, 1.0, w)[None, :] * np.ones((h, 1))
    out = []
    for _ in range(n):
        img = 0.3 + 0.4 * y * rng.uniform(0.5, 1.5) - 0.2 * np.exp(-((y - 0.3) / 0.1) ** 2) * (np.abs(x) > 0.3)
        for _ in range(5):  # random blobs anywhere
            cy, cx, r = rng.uniform(0, 1), rng.uniform(-1, 1), rng.uniform(0.05, 0.2)
            img += rng.uniform(-0.2, 0.2) * np.exp(-(((y - cy) / r) ** 2 + ((x - cx) / r) ** 2))
        img = img * rng.uniform(0.6, 1.4) + rng.normal(0, 0.05, size)  # exposure, noise
        out.append(np.clip(img, 0, 1)[..., None])
    return np.asarray(out, np.float32)


@pytest.mark.numeric
def test_fitted_probe_tells_every_orientation_of_unseen_films():
    probe = UprightProbe()
    probe.fit(_films(60, seed=SEED_SHIFT))
    errors = upright_errors(probe, _films(30, seed=SEED_SHIFT + 100))
    assert errors == {"upright": 0, "mirrored": 0, "rotated": 0, "flipped": 0}


def test_unfitted_probe_passes_every_image_and_fit_is_kept_by_a_keras_save(tmp_path):
    films = _films(20, seed=2)
    probe = UprightProbe()
    np.testing.assert_array_equal(np.asarray(probe(orientations(films)["rotated"])), 1.0)

    inp = keras.Input((64, 32, 1))
    model = keras.Model(inp, UprightProbe(name="probe")(inp))
    model.get_layer("probe").fit(_films(60, seed=0))
    expected = np.asarray(model(films[:, ::-1, ::-1]))
    assert np.all(expected < 0)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(np.asarray(loaded(films[:, ::-1, ::-1])), expected, rtol=1e-5, atol=1e-6)


def test_fit_refuses_a_wrong_shape():
    with pytest.raises(ValueError, match=r"float \[N, H, W, 1\].*\(4, 64, 32\)"):
        fit_upright_probe(np.zeros((4, 64, 32), np.float32))
