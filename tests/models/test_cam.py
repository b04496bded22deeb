import numpy as np
import pytest
import tensorflow as tf

from seg4reg_tf.models.cam import cam_attention, class_activation_maps, gradcam_attention, normalize_attention
from seg4reg_tf.models.regression import RegressionNet
from tests.fixtures import TINY_SIZE

H, W = TINY_SIZE


def _net():
    r = RegressionNet((H, W, 1), width=4, depth=3, angle_prior=(30.0, 20.0, 10.0))
    rng = np.random.default_rng(1)
    r.dense.kernel.assign(rng.normal(size=r.dense.kernel.shape).astype("float32"))
    return r, rng.random((2, H, W, 1)).astype("float32")


def test_cam_identity_mean_of_map_plus_bias_is_logit():
    r, x = _net()
    out = r(x)
    m = np.asarray(class_activation_maps(out["features"], r.kernel))
    assert m.shape == (2, H // 8, W // 8, 3)
    np.testing.assert_allclose(m.mean(axis=(1, 2)) + np.asarray(r.bias), np.asarray(out["logits"]), rtol=1e-4,
                               atol=1e-5)


def test_cam_attention_by_hand_and_range():
    f = np.zeros((1, 2, 2, 2), "float32")
    f[0, 0, 0] = [1.0, 0.0]
    f[0, 1, 1] = [0.0, 2.0]
    f[0, 0, 1] = [1.0, 1.0]
    kernel = np.array([[1.0, 1.0, 0.0], [-1.0, 0.0, 0.0]], "float32")  # sum_k W[c, k] = [2, -1]
    a = np.asarray(cam_attention(f, kernel, eps=0.0))
    # raw sum_k M_k: (0,0) 2, (1,1) -2 -> 0 after ReLU, (0,1) 1, (1,0) 0; divided by max 2
    np.testing.assert_allclose(a[0], [[1.0, 0.5], [0.0, 0.0]], atol=1e-6)
    z = np.asarray(normalize_attention(np.full((1, 2, 2), -3.0, "float32")))
    assert np.all(z == 0.0)  # no positive evidence -> all-zero map, no NaN


def test_gradcam_equals_cam_for_gap_linear_head():
    r, x = _net()
    f = r.features(tf.constant(x))
    a_cam = np.asarray(cam_attention(f, r.kernel))
    a_grad = np.asarray(gradcam_attention(f, lambda t: r.logits(t, training=False)))
    assert a_cam.max() == pytest.approx(1.0, abs=1e-4)
    np.testing.assert_allclose(a_grad, a_cam, atol=1e-4)


def test_summed_cam_centered_ignores_the_sum_of_the_logits():
    from seg4reg_tf.models.cam import summed_cam

    rng = np.random.default_rng(0)
    f = rng.normal(size=(2, 4, 3, 5)).astype("float32")
    w = rng.normal(size=(5, 3)).astype("float32")
    by_hand = np.einsum("bhwc,ck->bhw", f, w)
    np.testing.assert_allclose(summed_cam(f, w), by_hand, rtol=1e-5, atol=1e-5)
    centred = np.asarray(summed_cam(f, w, centered=True))
    np.testing.assert_allclose(centred, by_hand - by_hand.mean(axis=(1, 2), keepdims=True), rtol=1e-5, atol=1e-5)
    # the same feature vector added at every location moves every logit (and the plain map's mean),
    # but not the centred map: a loss on it cannot pull on the logits' sum
    shifted = f + rng.normal(size=(1, 1, 1, 5)).astype("float32")
    assert not np.allclose(np.asarray(summed_cam(shifted, w)).mean(), by_hand.mean(), atol=1e-3)
    np.testing.assert_allclose(summed_cam(shifted, w, centered=True), centred, rtol=1e-4, atol=1e-4)
