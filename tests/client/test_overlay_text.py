"""The overlay's text stays inside the image at any film width, and an absent curve reads as absent in the
title and the printed line, not as a named angle (issue 42)."""
from __future__ import annotations

import numpy as np

from seg4reg_tf.client.overlay import render_overlay
from seg4reg_tf.client.predict import InputImage, build_result, summary_line

TITLE = ["Cobb main 7.0 (0.2-15.8)  upper 3.9 (0.0-11.4)  uppermost 2.8 (0.0-13.7) deg",
         "lines drawn: the geometry head's end plates, whose angles are  main 6.1  upper 3.4  uppermost 0.3",
         "CAUTION: the vertebrae fitted to the segmentation give angles 26.7 deg away (> 20)",
         "averyveryveryverylongwordwithoutanyspacethatcannotbesplitatspacesanywhereatall"]


def test_no_title_text_is_drawn_past_the_film_edge():
    for width in (60, 150, 400):  # a narrow film, a typical one at this scale, a wide one
        image = np.full((900, width), 90, np.uint8)
        out = render_overlay(image, title=TITLE)
        band = out[: out.shape[0] - 900, :width]  # the title band above the film (the legend panel is right of it)
        assert band.any(), "no title drawn"
        ink = np.nonzero(band.max(axis=(0, 2)) > 0)[0]
        assert ink.max() < width - 2, f"text reaches the right edge of a {width} px wide film"


def _outputs():
    geometry = [8.0, 3.9, 0.0]
    return {"cobb_angles": [geometry], "cobb_angles_geometry": [geometry],
            "end_vertebrae": [[[6, 13], [1, 6], [16, 16]]],  # TL: upper == lower, the algorithm's "no curve"
            "original_size": [[300, 140]], "scale": [0.4], "padding": [[0.0, 4.0]]}


def test_an_absent_curve_reads_as_absent():
    item = InputImage("film.png", "film", b"", np.zeros((300, 140), np.uint8), None, "png")
    result, overlay = build_result(item, _outputs())
    assert result["curves"]["TL"]["role"] == "none"  # the JSON keeps the model's slot as it is
    line = summary_line("film.png", result)
    assert "TL: no curve" in line and "none" not in line
    assert "main 8.0" in line and "upper 3.9" in line
    assert overlay.shape[1] > 140
