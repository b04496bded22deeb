import numpy as np
import pytest
import tensorflow as tf

from seg4reg_tf.models import losses as L


def _onehot(labels, k):
    return np.eye(k, dtype="float32")[labels]


def test_cross_entropy_hand_values():
    labels = np.array([[[0, 1]]])
    probs = np.array([[[[0.5, 0.25, 0.25], [0.2, 0.8, 0.0]]]], "float32")
    expected = -(np.log(0.5) + np.log(0.8)) / 2
    assert float(L.segmentation_cross_entropy(labels, probs)) == pytest.approx(expected, rel=1e-5)


def test_dice_identical_masks_is_zero_and_disjoint_is_one():
    labels = np.array([[[0, 1, 2, 2], [1, 1, 0, 0]]])
    assert float(L.soft_dice_loss(labels, _onehot(labels, 4))) == pytest.approx(0.0, abs=1e-6)
    # every foreground prediction on the wrong class: dice 0 for classes 1 and 2 and class 3 absent -> 1
    wrong = np.array([[[0, 2, 1, 1], [2, 2, 0, 0]]])
    assert float(L.soft_dice_loss(labels, _onehot(wrong, 4))) == pytest.approx(1.0 - 1.0 / 3, abs=1e-5)


def test_dice_soft_hand_value():
    labels = np.array([[[0, 1]]])
    probs = np.array([[[[0.5, 0.5], [0.5, 0.5]]]], "float32")
    # class 1: inter = 0.5, sum p = 1.0, sum g = 1 -> dice = 1/2
    assert float(L.soft_dice_loss(labels, probs, smooth=0.0)) == pytest.approx(0.5, abs=1e-6)
    # with background: class 0 same 1/2 -> mean 1/2
    assert float(L.soft_dice_loss(labels, probs, include_background=True, smooth=0.0)) == pytest.approx(0.5)


def test_angle_l1_and_triangle_are_normalised():
    t = np.array([[30.0, 20.0, 10.0], [90.0, 0.0, 0.0]], "float32")
    p = np.array([[36.0, 20.0, 4.0], [180.0, 0.0, 0.0]], "float32")
    assert float(L.angle_l1_loss(t, p, 180.0)) == pytest.approx((6 + 6 + 90) / 6 / 180.0)
    assert float(L.triangle_loss(p, t, 90.0)) == pytest.approx((6 + 6 + 90) / 6 / 90.0)


def test_attention_loss_value_and_stop_gradient():
    ax = tf.constant([[[0.0, 1.0], [0.5, 0.5]]])
    am = tf.constant([[[1.0, 1.0], [0.0, 0.5]]])
    assert float(L.attention_loss(ax, am)) == pytest.approx((1 + 0 + 0.5 + 0) / 4)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([ax, am])
        loss = L.attention_loss(ax, am)
    assert tape.gradient(loss, am) is None or float(tf.reduce_sum(tf.abs(tape.gradient(loss, am)))) == 0.0
    assert float(tf.reduce_sum(tf.abs(tape.gradient(loss, ax)))) > 0
