import numpy as np
import pytest

from seg4reg_tf.geometry import vertebra_dice


def test_dice_by_hand():
    t = np.zeros((4, 4), int)
    p = np.zeros((4, 4), int)
    t[0, :2] = 1  # class 1: 2 px true
    p[0, :1] = 1  # 1 px predicted, 1 overlapping -> 2*1/(2+1)
    t[2, :] = 3  # class 3: 4 px true, predicted nowhere -> 0
    p[3, 0] = 5  # class 5: predicted only -> 0
    assert vertebra_dice(p, t) == pytest.approx(np.mean([2 / 3, 0.0, 0.0]))
    assert vertebra_dice(t, t) == 1.0
    assert np.isnan(vertebra_dice(np.zeros((2, 2)), np.zeros((2, 2))))
    with pytest.raises(ValueError, match="label maps"):
        vertebra_dice(np.zeros((2, 2)), np.zeros((2, 3)))
