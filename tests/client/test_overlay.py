"""Overlay rendering: labels coloured in place, heat map, Cobb lines, title band and legend panel."""
from __future__ import annotations

import numpy as np
import pytest

from seg4reg_tf.client.overlay import Curve, label_colours, render_overlay, to_display


def _landmarks_flat(h: int, w: int) -> np.ndarray:
    """17 axis-aligned boxes stacked down the middle (TL, TR, BL, BR)."""
    rows = []
    for v in range(17):
        top, bottom = 10 + v * 20, 10 + v * 20 + 14
        rows += [(w * 0.3, top), (w * 0.7, top), (w * 0.3, bottom), (w * 0.7, bottom)]
    return np.asarray(rows, float)


def test_colours_distinct_and_background_black():
    c = label_colours()
    assert c.shape == (18, 3) and c.dtype == np.uint8
    assert np.all(c[0] == 0)
    assert len({tuple(x) for x in c[1:]}) == 17


def test_to_display_stretches_16_bit():
    img = np.array([[0, 1000], [2000, 4000]], np.uint16)
    out = to_display(img)
    assert out.shape == (2, 2, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[..., 0], [[0, 64], [128, 255]])


def test_overlay_layout_and_content():
    h, w = 360, 200
    image = np.full((h, w), 100, np.uint8)
    labels = np.zeros((h, w), np.uint8)
    labels[50:80, 60:140] = 5
    att = np.zeros((h, w), np.float32)
    att[200:260, 20:60] = 1.0
    lm = _landmarks_flat(h, w)
    title = ["line one", "line two"]
    out = render_overlay(image, labels, att, lm, [Curve("PT", 12.3, 2, 9)], title)
    band = out.shape[0] - h
    assert band > 0 and out.shape[1] > w  # title band on top, legend panel on the right
    body = out[band:, :w].astype(int)
    # Labelled pixels take the vertebra's colour (blended), background pixels stay grey.
    expected = np.round(100 * (1 - 0.35) + label_colours()[5].astype(float) * 0.35)
    np.testing.assert_allclose(body[65, 100], expected, atol=1)
    np.testing.assert_array_equal(body[150, 5], [100, 100, 100])
    # Full attention is a JET red (BGR: red channel high) blend.
    assert body[230, 40, 2] > body[230, 40, 0] + 30
    # The Cobb line along T3's top endplate (y = 50) is drawn in the PT colour (red), extended past the box.
    assert body[50, int(w * 0.5), 2] > 200 and body[50, int(w * 0.5), 0] < 80
    assert body[50, int(w * 0.25), 2] > 200
    # Title text is present in the band.
    assert out[:band, :w].max() > 200


def test_overlay_skips_a_curve_without_extent():
    h, w = 360, 200
    image = np.full((h, w), 100, np.uint8)
    lm = _landmarks_flat(h, w)
    plain = render_overlay(image, landmarks=lm)
    # S-shaped spines with the main curve from T1 give the official TL curve (T1, T1), angle 0.
    np.testing.assert_array_equal(render_overlay(image, landmarks=lm, curves=[Curve("TL", 0.0, 0, 0)]), plain)
    assert not np.array_equal(render_overlay(image, landmarks=lm, curves=[Curve("TL", 4.0, 0, 2)]), plain)


def test_overlay_shape_mismatch_named():
    with pytest.raises(ValueError, match="labels"):
        render_overlay(np.zeros((100, 80)), labels=np.zeros((50, 40), np.uint8))
    with pytest.raises(ValueError, match="labels"):
        render_overlay(np.zeros((100, 80)), labels=np.full((100, 80), 30, np.uint8))
