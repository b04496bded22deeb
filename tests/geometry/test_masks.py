import numpy as np
import pytest

from seg4reg_tf.geometry import cobb_angles, implausible_vertebrae, label_map_to_landmarks, landmarks_to_label_map
from tests.fixtures import S_CURVE_X, SPINE_Y, interp_tilts, tilted_spine


def test_label_map_fills_each_vertebra_with_its_class():
    p = tilted_spine(np.zeros(17), np.full(17, 100.0), SPINE_Y, half_w=20, half_h=10)
    lab = landmarks_to_label_map(p, 1000, 200)
    assert lab.dtype == np.uint8 and lab.shape == (1000, 200)
    for v in range(17):
        cy = int(SPINE_Y[v])
        assert lab[cy, 100] == v + 1
        assert lab[cy, 100 + 25] == 0  # outside the 40 px wide box
        area = np.sum(lab == v + 1)
        assert area == pytest.approx(40 * 20, rel=0.1)
    assert lab[int(SPINE_Y[0] + 25), 100] == 0  # the disc gap between T1 and T2


def test_swapped_corners_still_fill_a_quadrilateral():
    p = tilted_spine(np.zeros(17), np.full(17, 100.0), SPINE_Y)
    swapped = p.copy()
    swapped[[0, 1]] = swapped[[1, 0]]  # T1 TL <-> TR (a real-data quirk)
    np.testing.assert_array_equal(landmarks_to_label_map(swapped, 1000, 200), landmarks_to_label_map(p, 1000, 200))


def test_label_map_to_landmarks_round_trip_preserves_angles():
    tilts = interp_tilts([0, 4, 12, 16], [3, 14, -18, -4])
    p = tilted_spine(tilts, S_CURVE_X, SPINE_Y, half_w=22, half_h=11)
    lab = landmarks_to_label_map(p, 1000, 400)
    back = label_map_to_landmarks(lab)
    assert not np.isnan(back).any()
    np.testing.assert_allclose(back.reshape(17, 4, 2).mean(1), p.reshape(17, 4, 2).mean(1), atol=1.0)
    np.testing.assert_allclose(cobb_angles(back, 1000), cobb_angles(p, 1000), atol=1.5)
    # corner order TL, TR, BL, BR
    q = back.reshape(17, 4, 2)
    assert np.all(q[:, 0, 0] < q[:, 1, 0]) and np.all(q[:, 0, 1] < q[:, 2, 1])


def test_missing_vertebra_gives_nan_rows():
    p = tilted_spine(np.zeros(17), np.full(17, 100.0), SPINE_Y)
    lab = landmarks_to_label_map(p, 1000, 200)
    lab[lab == 5] = 0
    back = label_map_to_landmarks(lab)
    assert np.isnan(back[16:20]).all() and not np.isnan(back[:16]).any()


def test_l5_labelled_at_the_top_is_left_out_of_the_mask():
    # The real-data quirk: L5's corners put near the top of the image when L5 is cut off.
    p = tilted_spine(np.zeros(17), np.full(17, 100.0), SPINE_Y)
    assert not implausible_vertebrae(p).any()
    p[64:68] = tilted_spine(np.zeros(17), np.full(17, 100.0), SPINE_Y)[0:4] + [30, -40]
    flags = implausible_vertebrae(p)
    assert flags.tolist() == [False] * 16 + [True]
    lab = landmarks_to_label_map(p, 1000, 200)
    assert not (lab == 17).any() and (lab == 16).any() and (lab == 1).any()
    assert (landmarks_to_label_map(p, 1000, 200, drop_implausible=False) == 17).any()


def test_scoliotic_spacing_is_not_implausible():
    tilts = interp_tilts([0, 4, 12, 16], [3, 14, -18, -4])
    assert not implausible_vertebrae(tilted_spine(tilts, S_CURVE_X, SPINE_Y)).any()
