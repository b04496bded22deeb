"""The batched keras.ops Cobb angles agree with the float64 port of the official algorithm."""
import numpy as np
import pytest

from seg4reg_tf.geometry import cobb_angles_details
from seg4reg_tf.geometry.cobb_ops import cobb_angles_ops, pairwise_angles_ops
from tests.data.test_aasce import REAL
from tests.fixtures import C_CURVE_X, S_CURVE_X, SPINE_Y, interp_tilts, tilted_spine


def _check_agrees(landmarks, heights):
    angles, ends = cobb_angles_ops(np.asarray(landmarks, np.float32), np.asarray(heights, np.float32))
    angles, ends = np.asarray(angles), np.asarray(ends)
    for k, (lm, h) in enumerate(zip(landmarks, heights)):
        ref = cobb_angles_details(lm, h)
        np.testing.assert_allclose(angles[k], ref.angles, atol=0.01, err_msg=f"landmark set {k}")
        assert [tuple(e) for e in ends[k]] == list(ref.end_vertebrae), f"landmark set {k}"


def test_every_branch_and_its_end_vertebrae():
    tilts = interp_tilts([0, 3, 13, 16], [0, 10, -20, -5])
    c_curve = tilted_spine(tilts, C_CURVE_X, SPINE_Y)
    s_curve = tilted_spine(interp_tilts([0, 4, 11, 16], [-3, 15, -18, 2]), S_CURVE_X, SPINE_Y)
    # the same S curve: main curve in the upper half (tall image) and in the lower half (short image)
    branches = [cobb_angles_details(p, h).branch for p, h in ((c_curve, 2000), (s_curve, 4000), (s_curve, 600))]
    assert branches == ["C", "S-upper", "S-lower"]
    _check_agrees([c_curve, s_curve, s_curve], [2000, 4000, 600])


def test_ties_take_the_first_maximum_as_matlab():
    """Equal tilts at several vertebrae: the first maximum wins (TF's argmax promises nothing on ties)."""
    tilts = np.zeros(17)
    tilts[[2, 5, 8]] = 10.0
    tilts[[11, 14]] = -10.0
    _check_agrees([tilted_spine(tilts, S_CURVE_X, SPINE_Y)], [2000])


def test_pairwise_angles_exceed_90_degrees():
    tilts = np.zeros(17)
    tilts[3], tilts[12] = 60.0, -65.0
    a = np.asarray(pairwise_angles_ops(tilted_spine(tilts, C_CURVE_X, SPINE_Y)[None].astype(np.float32)))[0]
    assert a[3, 12] == pytest.approx(125.0, abs=1e-3)


@pytest.mark.skipif(not REAL.is_dir(), reason="needs ../shared/aasce/boostnet_labeldata (real AASCE labels)")
def test_reproduces_the_released_angles_of_every_training_label():
    from seg4reg_tf.data.aasce import load_split

    records = load_split(str(REAL), "training", check_images=False, progress=False)
    lm = np.stack([r.landmarks for r in records])
    angles, _ = cobb_angles_ops(lm.astype(np.float32), np.array([r.height for r in records], np.float32))
    csv = np.stack([r.angles for r in records])
    assert np.abs(np.asarray(angles) - csv).max() < 0.01
    # and the end vertebrae of the float64 port
    _check_agrees(lm, [r.height for r in records])


def test_nan_vertebrae_give_indices_in_range():
    """A NaN vertebra (as from non-finite weights) is ignored as MATLAB's max does, never index 17."""
    p = tilted_spine(interp_tilts([0, 3, 13, 16], [0, 10, -20, -5]), C_CURVE_X, SPINE_Y).astype(np.float32)
    p[4 * 5: 4 * 6] = np.nan
    _, ends = cobb_angles_ops(p[None], np.float32(2000))
    assert np.all((np.asarray(ends) >= 0) & (np.asarray(ends) <= 16))
