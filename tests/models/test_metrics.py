import numpy as np
import pytest

from seg4reg_tf.geometry import angle_mae, smape, vertebra_dice
from seg4reg_tf.models.metrics import SMAPE, AngleMAE, PooledDice


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


def test_pooled_dice_hand_value_and_accumulation():
    k = 4
    labels = np.array([[[0, 1, 1, 2]]])
    pred = np.array([[[0, 1, 2, 2]]])
    probs = np.eye(k, dtype="float32")[pred]
    m = PooledDice(n_classes=k)
    m.update_state(labels, probs)
    # class 1: 2*1/(1+2) = 2/3; class 2: 2*1/(2+1) = 2/3; class 3 absent -> excluded
    assert float(m.result()) == pytest.approx(2 / 3, rel=1e-6)
    m.update_state(np.array([[[3, 3, 0, 0]]]), np.eye(k, dtype="float32")[np.array([[[3, 3, 0, 0]]])])
    assert float(m.result()) == pytest.approx((2 / 3 + 2 / 3 + 1) / 3, rel=1e-6)
    m.reset_state()
    assert float(m.result()) == 0.0


def test_pooled_dice_is_its_pure_twin_on_the_stacked_maps():
    rng = np.random.default_rng(1)
    k = 5
    labels = rng.integers(0, k, (3, 6, 4))
    pred = np.where(rng.random((3, 6, 4)) < 0.7, labels, rng.integers(0, k, (3, 6, 4)))
    m = PooledDice(n_classes=k)
    for i in range(3):  # one image per update: the counts pool across updates
        m.update_state(labels[i : i + 1], np.eye(k, dtype="float32")[pred[i : i + 1]])
    assert float(m.result()) == pytest.approx(vertebra_dice(pred, labels, n_classes=k), rel=1e-6)
    per_image = np.mean([vertebra_dice(pred[i], labels[i], n_classes=k) for i in range(3)])
    assert float(m.result()) != pytest.approx(per_image, rel=1e-6)  # pooled, not a mean of images
