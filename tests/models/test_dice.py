import numpy as np
import pytest

from seg4reg_tf.models.dice import MeanDice


def test_mean_dice_hand_value_and_accumulation():
    k = 4
    labels = np.array([[[0, 1, 1, 2]]])
    pred = np.array([[[0, 1, 2, 2]]])
    probs = np.eye(k, dtype="float32")[pred]
    m = MeanDice(n_classes=k)
    m.update_state(labels, probs)
    # class 1: 2*1/(1+2) = 2/3; class 2: 2*1/(2+1) = 2/3; class 3 absent -> excluded
    assert float(m.result()) == pytest.approx(2 / 3, rel=1e-6)
    m.update_state(np.array([[[3, 3, 0, 0]]]), np.eye(k, dtype="float32")[np.array([[[3, 3, 0, 0]]])])
    assert float(m.result()) == pytest.approx((2 / 3 + 2 / 3 + 1) / 3, rel=1e-6)
    m.reset_state()
    assert float(m.result()) == 0.0
