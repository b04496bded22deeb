"""attention_in_spine / attention_area on a hand-built spine (17 boxes, 24 px wide, in a 256 x 128 frame)."""
import numpy as np
import pytest

from seg4reg_tf.evaluation.attention import attention_in_spine, median_vertebra_width, pool_to_grid

H, W = 256, 128


def column_spine(x0=52.0, width=24.0):
    lm = []
    for v in range(17):
        top, bottom = 16 + 13.2 * v, 26 + 13.2 * v
        lm += [(x0, top), (x0 + width, top), (x0, bottom), (x0 + width, bottom)]
    return np.array(lm)


def test_median_width_of_boxes():
    assert median_vertebra_width(column_spine(width=24.0)) == pytest.approx(24.0)


def test_uniform_attention_scores_the_band_area():
    share, area = attention_in_spine(np.ones((8, 4)), column_spine(), (H, W))
    # band: x 28..100 (72 of 128 px) on the 17 vertebra bodies (11 rasterised rows each)
    assert area == pytest.approx((72 / 128) * (17 * 11 / 256), abs=0.02)
    assert share == pytest.approx(area)


def test_attention_on_the_spine_columns_vs_off_it():
    on = np.zeros((8, 4))
    on[1:7, 1:3] = 1.0  # cells x 32..96, rows 32..224: all inside the widened band's columns
    off = np.zeros((8, 4))
    off[:, 3] = 1.0  # x 96..128: the band reaches x=100 at most
    share_on, _ = attention_in_spine(on, column_spine(), (H, W))
    share_off, _ = attention_in_spine(off, column_spine(), (H, W))
    assert share_on > 0.6
    assert share_off < 0.15


def test_all_zero_attention_is_nan_and_bad_shapes_are_named():
    share, _ = attention_in_spine(np.zeros((8, 4)), column_spine(), (H, W))
    assert np.isnan(share)
    with pytest.raises(ValueError, match="attention"):
        attention_in_spine(np.ones((8, 4, 1)), column_spine(), (H, W))
    with pytest.raises(ValueError, match="grid"):
        pool_to_grid(np.ones((10, 10)), (3, 3))
