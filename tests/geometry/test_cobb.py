import numpy as np
import pytest

from seg4reg_tf.geometry import (
    BRANCH_C,
    BRANCH_S_LOWER,
    BRANCH_S_UPPER,
    cobb_angles,
    cobb_angles_details,
)
from tests.fixtures import C_CURVE_X, S_CURVE_X, SPINE_Y, interp_tilts, tilted_spine

# Tilts 5 deg at T1, 10 at T4, -20 at L2, -5 at L5 (linear in between): PT = 30 between T4 (3) and L2 (13).
TILTS = interp_tilts([0, 3, 13, 16], [5, 10, -20, -5])


def test_straight_spine_is_zero():
    p = tilted_spine(np.zeros(17), np.full(17, 200.0), SPINE_Y)
    np.testing.assert_allclose(cobb_angles(p, 1000), [0, 0, 0], atol=1e-9)


def test_two_tilted_vertebrae_give_their_angle():
    tilts = np.zeros(17)
    tilts[4], tilts[9] = 12.5, -7.25
    p = tilted_spine(tilts, np.full(17, 200.0), SPINE_Y)
    d = cobb_angles_details(p, 2000)
    assert d.angles[0] == pytest.approx(19.75, abs=1e-6)
    assert d.end_vertebrae[0] == (4, 9)


def test_c_curve():
    # T1 untilted, so its endplate midpoints stay on the bump's side of the chord
    tilts = interp_tilts([0, 3, 13, 16], [0, 10, -20, -5])
    d = cobb_angles_details(tilted_spine(tilts, C_CURVE_X, SPINE_Y), 2000)
    assert d.branch == BRANCH_C
    # C: MT = A[T1, upper end], TL = A[L5, lower end]
    np.testing.assert_allclose(d.angles, [30, abs(0 - 10), abs(-5 - -20)], atol=1e-6)
    assert d.end_vertebrae == ((3, 13), (0, 3), (13, 16))
    assert d.end_vertebra_names()[0] == ("T4", "L2")


def test_s_curve_upper_branch():
    # bottom-edge midpoints of T4 and L2 sum to ~1020 px < H = 2000: main curve in the upper half
    d = cobb_angles_details(tilted_spine(TILTS, S_CURVE_X, SPINE_Y), 2000)
    assert d.branch == BRANCH_S_UPPER
    # MT = max A[T4, T1..T4] = |10 - 5|; TL = max A[L2, L2..L5] = |-20 - -5|
    np.testing.assert_allclose(d.angles, [30, 5, 15], atol=1e-6)
    assert d.end_vertebrae[1] == (0, 3) and d.end_vertebrae[2] == (13, 16)


def test_s_curve_lower_branch_uses_bottom_edges_and_height():
    p = tilted_spine(TILTS, S_CURVE_X, SPINE_Y)
    bottom_sum = (p[4 * 3 + 2, 1] + p[4 * 3 + 3, 1]) / 2 + (p[4 * 13 + 2, 1] + p[4 * 13 + 3, 1]) / 2
    top_sum = (p[4 * 3, 1] + p[4 * 3 + 1, 1]) / 2 + (p[4 * 13, 1] + p[4 * 13 + 1, 1]) / 2
    # H between the two sums: the top-edge test (the common Python port) would say "upper"
    h = (bottom_sum + top_sum) / 2
    assert top_sum < h < bottom_sum
    d = cobb_angles_details(p, h)
    assert d.branch == BRANCH_S_LOWER
    # MT = max A[T4, T1..T4] = 5 at k = T1 (first argmax); TL = max A[T1, T1..T1] = 0
    np.testing.assert_allclose(d.angles, [30, 5, 0], atol=1e-6)
    assert d.end_vertebrae[1] == (0, 3) and d.end_vertebrae[2] == (0, 0)


def test_angles_above_90_are_not_clipped():
    tilts = interp_tilts([0, 16], [-50, 60])
    d = cobb_angles_details(tilted_spine(tilts, C_CURVE_X, SPINE_Y), 2000)
    assert d.angles[0] == pytest.approx(110.0, abs=1e-6)


def test_first_maximum_tie_breaking():
    # Two disjoint pairs with the same 20 deg angle: MATLAB's column-wise max picks the lowest column.
    tilts = np.zeros(17)
    tilts[[2, 5]] = [10, -10]
    tilts[[10, 14]] = [10, -10]
    d = cobb_angles_details(tilted_spine(tilts, C_CURVE_X, SPINE_Y), 2000)
    assert d.angles[0] == pytest.approx(20.0, abs=1e-6)
    assert d.end_vertebrae[0] == (2, 5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pt_invariant_to_rotation_isotropic_scale_and_flip(seed):
    rng = np.random.default_rng(seed)
    tilts = np.cumsum(rng.normal(0, 4, 17))
    p = tilted_spine(tilts, S_CURVE_X + rng.normal(0, 3, 17), SPINE_Y)
    pt = cobb_angles(p, 2000)[0]
    t = np.radians(23.0)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    moved = (p @ rot.T) * 1.7 + [15.0, -40.0]
    flipped = p * [-1, 1] + [1000, 0]
    assert cobb_angles(moved, 5000)[0] == pytest.approx(pt, abs=1e-5)
    assert cobb_angles(flipped, 2000)[0] == pytest.approx(pt, abs=1e-5)


def test_anisotropic_scale_changes_angles():
    p = tilted_spine(TILTS, C_CURVE_X, SPINE_Y)
    assert abs(cobb_angles(p * [1.0, 2.0], 4000)[0] - cobb_angles(p, 2000)[0]) > 1.0


def test_bad_landmarks_raise():
    with pytest.raises(ValueError, match=r"\(68, 2\)"):
        cobb_angles(np.zeros((17, 4)), 100)
    bad = tilted_spine(TILTS, C_CURVE_X, SPINE_Y)
    bad[5, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        cobb_angles(bad, 100)
