import numpy as np
import pytest

from seg4reg_tf.geometry import angle_mae, smape, smape_per_image


def test_smape_hand_computed():
    pred = np.array([[10.0, 5.0, 3.0], [20.0, 0.0, 1.0]])
    true = np.array([[12.0, 4.0, 3.0], [18.0, 2.0, 0.0]])
    # image 1: (2 + 1 + 0) / (22 + 9 + 6) = 3/37; image 2: (2 + 2 + 1) / (38 + 2 + 1) = 5/41
    expected = 100 * (3 / 37 + 5 / 41) / 2
    assert smape(pred, true) == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(smape_per_image(pred, true), [300 / 37, 500 / 41])


def test_smape_zero_over_zero_is_zero_and_perfect_is_zero():
    assert smape(np.zeros(3), np.zeros(3)) == 0.0
    assert smape([[30, 20, 10]], [[30, 20, 10]]) == 0.0


def test_smape_uses_plain_sum_denominator():
    # textbook SMAPE (half-sum) would give 200 * 10 / 30
    assert smape([[20, 0, 0]], [[10, 0, 0]]) == pytest.approx(100 * 10 / 30)


def test_angle_mae():
    np.testing.assert_allclose(angle_mae([[1, 2, 3], [3, 2, 1]], [[0, 0, 0], [0, 0, 0]]), [2, 2, 2])


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="pred and true"):
        smape(np.zeros((2, 3)), np.zeros((3, 3)))
