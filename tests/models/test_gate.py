import numpy as np
import tensorflow as tf

from seg4reg_tf.models.gate import RoiGate


def test_gate_zero_is_identity_one_doubles_and_bilinear_upsamples():
    g = tf.constant(np.random.default_rng(0).normal(size=(2, 8, 4, 3)).astype("float32"))
    gate = RoiGate()
    np.testing.assert_allclose(gate(g, tf.zeros((2, 2, 1))), g, rtol=1e-6)
    np.testing.assert_allclose(gate(g, tf.ones((2, 2, 1))), 2 * np.asarray(g), rtol=1e-6)
    # a constant 0.5 map gives exactly 1.5 x
    np.testing.assert_allclose(gate(g, tf.fill((2, 4, 2), 0.5)), 1.5 * np.asarray(g), rtol=1e-6)
    a = np.zeros((1, 2, 1), "float32")
    a[0, 0, 0] = 1.0  # top half attended
    out = np.asarray(gate(tf.ones((1, 8, 4, 1)), a))[0, :, 0, 0]
    assert out[0] == 2.0 and out[-1] == 1.0 and np.all(np.diff(out) <= 0)


def test_gate_stop_gradient():
    g = tf.ones((1, 4, 4, 2))
    a = tf.Variable(tf.fill((1, 2, 2), 0.3))
    for stop, expect_zero in ((True, True), (False, False)):
        with tf.GradientTape() as tape:
            y = tf.reduce_sum(RoiGate(stop_gradient=stop)(g, a))
        grad = tape.gradient(y, a)
        total = 0.0 if grad is None else float(tf.reduce_sum(tf.abs(grad)))
        assert (total == 0.0) == expect_zero


def test_gate_config_round_trip():
    gate = RoiGate(stop_gradient=False, name="g")
    assert RoiGate.from_config(gate.get_config()).stop_gradient is False
