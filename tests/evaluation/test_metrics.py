import numpy as np
import pytest

from seg4reg_tf.evaluation.metrics import SMAPE, AngleMAE
from seg4reg_tf.geometry import angle_mae, smape


def test_smape_metric_matches_pure_function_over_batches():
    rng = np.random.default_rng(0)
    true = rng.uniform(0, 60, (10, 3))
    pred = true + rng.normal(0, 5, (10, 3))
    m = SMAPE()
    m.update_state(true[:4], pred[:4])
    m.update_state(true[4:], pred[4:])
    assert float(m.result()) == pytest.approx(smape(pred, true), rel=1e-5)
    m.reset_state()
    assert float(m.result()) == 0.0


def test_smape_metric_zero_over_zero():
    m = SMAPE()
    m.update_state(np.zeros((2, 3)), np.zeros((2, 3)))
    assert float(m.result()) == 0.0


@pytest.mark.parametrize("angle", [0, 1, 2])
def test_angle_mae_metric(angle):
    true = np.array([[10.0, 20.0, 30.0], [0.0, 0.0, 0.0]])
    pred = np.array([[12.0, 17.0, 30.0], [1.0, 1.0, 4.0]])
    m = AngleMAE(angle)
    m.update_state(true, pred)
    assert float(m.result()) == pytest.approx(angle_mae(pred, true)[angle], rel=1e-6)
    assert m.name == ["mae_pt", "mae_mt", "mae_tl"][angle]


def test_angle_mae_rejects_bad_index():
    with pytest.raises(ValueError, match="angle"):
        AngleMAE(3)
