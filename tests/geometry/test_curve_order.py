"""Two heads that rank MT and TL the other way round: detected, and the fused answer cautioned (issue 40).
The answer stays the slot-by-slot mean: pairing the curves by size, or reporting the geometry head, made
the out-of-fold answers worse (BENCHMARKS.md, "Which curve is which")."""
from __future__ import annotations

import numpy as np
import pytest

from seg4reg_tf.client.predict import InputImage, build_result
from seg4reg_tf.geometry.curve_order import ORDER_TOLERANCE, curves_swapped

# a held-out film (truth 39.3 / 38.3 / 14.5): the heads found the same two smaller curves, in the other order
GEOMETRY = [41.0, 39.7, 17.9]
SWAPPED = [40.2, 17.5, 38.9]
AGREEING = [40.2, 38.9, 17.5]


def test_opposite_ranks_are_found_and_near_ties_left_out():
    g = np.array([GEOMETRY, GEOMETRY, [30.0, 18.0, 17.0], [30.0, 18.0, 14.0]])
    s = np.array([SWAPPED, AGREEING, [29.0, 16.0, 17.5], [29.0, 14.0, 16.5]])
    np.testing.assert_array_equal(curves_swapped(g, s), [True, False, True, True])
    # the caution's tolerance: each head's two curves more than 2 deg apart
    np.testing.assert_array_equal(curves_swapped(g, s, ORDER_TOLERANCE), [True, False, False, True])


def _outputs(segmentation):
    fused = (0.5 * (np.array(GEOMETRY) + np.array(segmentation))).tolist()
    return {"cobb_angles": [fused], "cobb_angles_geometry": [GEOMETRY], "cobb_angles_segmentation": [segmentation],
            "cobb_angles_image": [segmentation], "consistency": [0.0],
            "end_vertebrae": [[[4, 10], [0, 4], [10, 16]]],
            "original_size": [[300, 140]], "scale": [0.4], "padding": [[0.0, 4.0]]}


@pytest.mark.parametrize("segmentation, differs", [(SWAPPED, True), (AGREEING, False)])
def test_a_fused_answer_of_heads_that_swap_mt_and_tl_is_cautioned(segmentation, differs):
    item = InputImage("film.png", "film", b"", np.zeros((300, 140), np.uint8), None, "png")
    result, _ = build_result(item, _outputs(segmentation), disagreement_threshold=5.0, fitted_threshold=1e9)
    assert result["reported_head"] == "fused"
    assert result["curve_order_differs"] is differs and result["heads_disagree"] is differs
    if differs:
        assert "rank the two smaller curves the other way round" in result["caution"]
        assert "MT 39.7, TL 17.9" in result["caution"] and "MT 17.5, TL 38.9" in result["caution"]
    else:
        assert result["caution"] is None
    # a geometry-head answer has no second head to be swapped against
    geometry_only = {**_outputs(segmentation), "cobb_angles": [GEOMETRY]}
    result, _ = build_result(item, geometry_only, disagreement_threshold=5.0, fitted_threshold=1e9)
    assert result["reported_head"] == "geometry" and result["curve_order_differs"] is None
