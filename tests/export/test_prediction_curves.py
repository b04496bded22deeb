"""The reported curves named for what they are (main, upper, lower: AASCE's columns PT / MT / TL are the
largest curve and the curves beside it), and for a fused answer the angle of the lines actually drawn."""
from __future__ import annotations

import numpy as np

from seg4reg_tf.export.prediction import Curve, Prediction, curve_roles


def test_roles_from_the_end_vertebrae():
    assert curve_roles([(4, 10), (0, 4), (10, 16)]) == ("main", "upper", "lower")  # the usual S
    assert curve_roles([(8, 12), (3, 8), (0, 3)]) == ("main", "upper", "uppermost")  # both above (official step 8)
    assert curve_roles([(11, 14), (0, 5), (5, 11)]) == ("main", "uppermost", "upper")  # told apart by position
    assert curve_roles([(0, 4), (4, 9), (9, 16)]) == ("main", "lower", "lowest")  # both below
    assert curve_roles([(4, 10), (0, 4), (16, 16)]) == ("main", "upper", "none")  # no third curve
    assert curve_roles([(4, 10), (5, 12), (10, 16)]) == ("main", "secondary", "lower")  # overlapping ends


def test_fused_curves_carry_their_roles_and_the_geometry_heads_line_angle():
    out = {"cobb_angles": [[28.5, 17.1, 13.3]], "cobb_angles_geometry": [[30.9, 18.0, 14.2]],
           "cobb_angles_segmentation": [[26.1, 16.2, 12.4]], "end_vertebrae": [[[4, 10], [0, 4], [10, 16]]],
           "original_size": [[300, 140]], "scale": [0.4], "padding": [[0.0, 4.0]]}
    pred = Prediction.from_outputs(out)
    assert pred.reported_head == "fused"
    assert [c.role for c in pred.curves] == ["main", "upper", "lower"]
    np.testing.assert_allclose([c.lines_angle for c in pred.curves], [30.9, 18.0, 14.2], rtol=1e-6)
    assert pred.curves[0].caption == "main 28.5 T5-T11"
    assert pred.curves[0].to_json()["role"] == "main"
    geometry_only = Prediction.from_outputs({**out, "cobb_angles": out["cobb_angles_geometry"]})
    assert geometry_only.reported_head == "geometry" and geometry_only.curves[0].lines_angle is None
    assert Curve("PT", 47.34, 4, 10, (43.06, 52.01), "main").caption == "main 47.3 (43.1-52.0) T5-T11"
