"""Fusing only matching curves: a segmentation head that puts MT and TL the other way round from the
geometry head is paired by size before the mean, and the answer carries a caution (issue 40)."""
from __future__ import annotations

import numpy as np
import pytest

from seg4reg_tf.client.predict import InputImage, build_result
from seg4reg_tf.export.prediction import Prediction
from seg4reg_tf.geometry.curve_order import ORDER_TOLERANCE, curves_swapped
from seg4reg_tf.models.seg4reg_plus import fuse

# a held-out film (truth 39.3 / 38.3 / 14.5): the heads found the same two smaller curves, in the other order
GEOMETRY = [41.0, 39.7, 17.9]
SWAPPED = [40.2, 17.5, 38.9]
AGREEING = [40.2, 38.9, 17.5]


def test_opposite_orders_are_swapped_and_near_ties_are_not():
    g = np.array([GEOMETRY, GEOMETRY, [30.0, 18.0, 17.0], [30.0, 18.0, 14.0]])
    s = np.array([SWAPPED, AGREEING, [29.0, 16.0, 17.5], [29.0, 14.0, 16.5]])
    np.testing.assert_array_equal(curves_swapped(g, s), [True, False, True, True])
    # the caution's tolerance: each head's two curves more than 2 deg apart
    np.testing.assert_array_equal(curves_swapped(g, s, ORDER_TOLERANCE), [True, False, False, True])


def test_the_fused_answer_pairs_the_curves_by_size():
    got = np.asarray(fuse(np.array([GEOMETRY, GEOMETRY], "float32"), np.array([SWAPPED, AGREEING], "float32")))
    by_hand = [(41.0 + 40.2) / 2, (39.7 + 38.9) / 2, (17.9 + 17.5) / 2]  # MT with MT, TL with TL
    np.testing.assert_allclose(got, [by_hand, by_hand], atol=1e-5)
    # slot by slot the mean would have been 28.6 / 28.4, wrong for both curves


def _outputs(reported, segmentation):
    return {"cobb_angles": [reported], "cobb_angles_geometry": [GEOMETRY], "cobb_angles_segmentation": [segmentation],
            "cobb_angles_image": [AGREEING], "consistency": [0.0],
            "end_vertebrae": [[[4, 10], [0, 4], [10, 16]]],
            "original_size": [[300, 140]], "scale": [0.4], "padding": [[0.0, 4.0]]}


@pytest.mark.parametrize("segmentation, differs", [(SWAPPED, True), (AGREEING, False)])
def test_a_swap_is_read_as_fused_and_cautioned(segmentation, differs):
    reported = np.asarray(fuse(np.array([GEOMETRY], "float32"), np.array([segmentation], "float32")))[0].tolist()
    assert Prediction.from_outputs(_outputs(reported, segmentation)).reported_head == "fused"
    item = InputImage("film.png", "film", b"", np.zeros((300, 140), np.uint8), None, "png")
    result, _ = build_result(item, _outputs(reported, segmentation), threshold=5.0, geometry_threshold=1e9)
    assert result["curve_order_differs"] is differs and result["heads_disagree"] is differs
    if differs:
        assert "order the two smaller curves differently" in result["caution"]
        assert "MT 39.7, TL 17.9" in result["caution"] and "MT 17.5, TL 38.9" in result["caution"]
    else:
        assert result["caution"] is None
    # a model of version 7 or earlier averaged slot by slot: still read as fused, and cautioned the same
    old = (0.5 * (np.array(GEOMETRY) + np.array(segmentation))).tolist()
    result, _ = build_result(item, _outputs(old, segmentation), threshold=5.0, geometry_threshold=1e9)
    assert result["reported_head"] == "fused" and result["curve_order_differs"] is differs
