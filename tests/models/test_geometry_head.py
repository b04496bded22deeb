"""The geometry head: vertebra rectangles, soft pooling, missing vertebrae, flip, losses, fine-tuning."""
import numpy as np
import pytest

from seg4reg_tf.geometry import cobb_angles_details, landmarks_to_label_map
from seg4reg_tf.models.geometry_head import GeometryHead, landmark_geometry, vertebra_landmarks
from seg4reg_tf.models.seg4reg_plus import Seg4RegPlus
from tests.fixtures import TINY_SIZE, interp_tilts, tiny_model_config

H, W = 128, 64


def _spine(tilts=None):
    """Model-frame landmarks (68, 2) of 17 rectangles 12 x 5 px down a 128 x 64 frame."""
    tilts = interp_tilts([0, 5, 12, 16], [4, 14, -12, 2]) if tilts is None else tilts
    centres = np.stack([32 + 6 * np.sin(np.arange(17) / 3.0), 8 + 7 * np.arange(17)], -1)
    sizes = np.tile([12.0, 5.0], (17, 1))
    return np.asarray(vertebra_landmarks(centres[None], tilts[None], sizes[None]))[0], tilts, centres


def _one_hot(landmarks, drop=()):
    labels = landmarks_to_label_map(landmarks.astype(np.float64), H, W).astype(int)
    for v in drop:
        labels[labels == v + 1] = 0
    return np.eye(18, dtype="float32")[labels][None]


def test_rectangles_and_their_true_geometry_round_trip():
    lm, tilts, centres = _spine()
    got_tilts, got_centres = (np.asarray(a)[0] for a in landmark_geometry(lm[None]))
    np.testing.assert_allclose(got_tilts, tilts, atol=1e-4)
    np.testing.assert_allclose(got_centres, centres, atol=1e-4)
    # the official algorithm reads exactly these tilts: PT is the largest tilt difference
    assert cobb_angles_details(lm, H).angles[0] == pytest.approx(26.0, abs=1e-3)


def test_pooling_finds_centres_sizes_and_flags_missing_vertebrae():
    lm, _, centres = _spine()
    head = GeometryHead(context=8, strides=())
    feats = {"g": np.random.default_rng(0).random((1, H, W, 4)).astype("float32")}
    head.build({"g": 4})
    out = {k: np.asarray(v)[0] for k, v in head(feats, _one_hot(lm, drop=(8,))).items()}
    visible = out["vertebra_visible"] > 0
    assert visible.sum() == 16 and not visible[8]
    ok = np.arange(17) != 8
    np.testing.assert_allclose(out["vertebra_centres"][ok], centres[ok], atol=0.6)  # rasterised rectangles
    # the missing T9 is placed between its neighbours from the visible ones
    assert centres[7, 1] < out["vertebra_centres"][8, 1] < centres[9, 1]
    # width and height are measured along and across the (here untrained) tilt; w^2 + h^2 does not depend on it
    labels = np.argmax(_one_hot(lm, drop=(8,))[0], axis=-1)
    spread = [12 * sum(np.var(c) for c in np.nonzero(labels == v + 1)) for v in range(17) if v != 8]
    np.testing.assert_allclose(np.sum(out["vertebra_sizes"][ok] ** 2, axis=-1), spread, rtol=1e-3)


def _geometry_model(**kw):
    return Seg4RegPlus(tiny_model_config(geometry_head=True, head="geometry", **kw), image_size=TINY_SIZE)


def test_flip_tta_mirrors_the_geometry():
    model = _geometry_model(tta="flip")
    x = np.random.default_rng(1).random((1, *TINY_SIZE, 1)).astype("float32")
    a, b = model({"image": x}), model({"image": x[:, :, ::-1]})
    np.testing.assert_allclose(np.asarray(b["vertebra_tilts"]), -np.asarray(a["vertebra_tilts"]), atol=1e-3)
    ca, cb = np.asarray(a["vertebra_centres"]), np.asarray(b["vertebra_centres"])
    np.testing.assert_allclose(cb[..., 0], TINY_SIZE[1] - ca[..., 0], atol=1e-3)
    np.testing.assert_allclose(np.asarray(a["cobb_angles"]), np.asarray(b["cobb_angles"]), atol=1e-2)
    np.testing.assert_array_equal(np.asarray(a["cobb_angles"]), np.asarray(a["cobb_angles_geometry"]))


def test_geometry_losses_by_hand_and_a_missing_target_is_named():
    model = _geometry_model()
    x = np.random.default_rng(2).random((2, *TINY_SIZE, 1)).astype("float32")
    lm = np.stack([_spine()[0] * 0.5, _spine(np.zeros(17))[0] * 0.5]).astype("float32")  # into 64 x 32
    labels = np.stack([landmarks_to_label_map(p.astype(np.float64), *TINY_SIZE) for p in lm]).astype("int32")
    y = {"angles": np.array([[26.0, 10, 14], [0, 0, 0]], "float32"), "labels": labels, "landmarks": lm}
    out = model({"image": x})
    terms, _ = model.loss_terms(y, out)
    tilts, centres = (np.asarray(a) for a in landmark_geometry(lm))
    err = np.asarray(out["vertebra_tilts"]) - tilts
    mean = err.mean(axis=1, keepdims=True)
    assert float(terms["tilt_loss"]) == pytest.approx(np.abs(err - mean).mean() + 0.25 * np.abs(mean).mean(), rel=1e-4)
    assert float(terms["centre_loss"]) == pytest.approx(np.abs(np.asarray(out["vertebra_centres"]) - centres).mean(),
                                                        rel=1e-4)
    with pytest.raises(ValueError, match='"landmarks"'):
        model.loss_terms({k: v for k, v in y.items() if k != "landmarks"}, out)


def test_fine_tuning_a_model_without_the_head_keeps_its_weights(tmp_path):
    from seg4reg_tf.training.train import load_init_weights

    plain = Seg4RegPlus(tiny_model_config(), image_size=TINY_SIZE)
    plain.save(tmp_path / "plain.keras")
    model = _geometry_model()
    fresh = [np.array(v) for v in model.geometry.weights]
    load_init_weights(model, str(tmp_path / "plain.keras"))
    for a, b in zip(plain.regressor.weights + plain.segmenter.weights,
                    model.regressor.weights + model.segmenter.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for a, b in zip(fresh, model.geometry.weights):
        np.testing.assert_array_equal(a, np.asarray(b))


def test_an_absent_vertebra_keeps_the_gradients_finite():
    """A vertebra moved out of the frame (no mass, zero variance) once made the gradients NaN."""
    import tensorflow as tf

    lm, _, _ = _spine()
    head = GeometryHead(context=8, strides=())
    head.build({"g": 4})
    feats = {"g": tf.constant(np.random.default_rng(0).random((1, H, W, 4)), tf.float32)}
    probs = tf.constant(_one_hot(lm, drop=(0, 1, 16)))
    with tf.GradientTape() as tape:
        tape.watch(feats["g"])
        out = head(feats, probs)
        loss = tf.reduce_sum(out["vertebra_tilts"]) + tf.reduce_sum(out["vertebra_sizes"])
    grads = tape.gradient(loss, head.trainable_weights + [feats["g"]])
    assert all(np.all(np.isfinite(np.asarray(g))) for g in grads)
