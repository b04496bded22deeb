import numpy as np
import pytest

from seg4reg_tf.geometry import Letterbox


def test_the_graph_letterbox_read_back_centres_and_keeps_the_aspect():
    from seg4reg_tf.data.preprocess import letterbox_transform

    # 2000 x 800 into 512 x 256: scale = min(512/2000, 256/800) = 0.256; width 204.8 -> 25.6 each side
    lb = Letterbox.from_vector(letterbox_transform(2000, 800, (512, 256)).numpy())
    assert (lb.scale, lb.pad_top, lb.pad_left) == pytest.approx((0.256, 0.0, 25.6))
    assert lb.original_size == (2000, 800) and lb.model_size == (512, 256)


def test_points_round_trip_and_hand_values():
    lb = Letterbox(0.25, 6.0, 28.0, 2000, 800)
    model = np.array([[28.0, 6.0], [128.0, 256.0], [np.nan, np.nan]])
    orig = lb.to_original(model)
    np.testing.assert_allclose(orig[:2], [[0, 0], [400, 1000]])
    assert np.all(np.isnan(orig[2]))
    np.testing.assert_allclose(lb.to_model(orig[:2]), model[:2])


def test_vector_and_export_outputs_give_the_same_value():
    lb = Letterbox(0.5, 3.0, 7.5, 100, 60)
    assert Letterbox.from_vector(np.array([0.5, 3.0, 7.5, 100, 60])) == lb
    outputs = {"original_size": np.array([[9, 9], [100, 60]], np.int32), "scale": np.array([1.0, 0.5], np.float32),
               "padding": np.array([[0, 0], [3.0, 7.5]], np.float32)}
    assert Letterbox.from_outputs(outputs, 1) == lb
    with pytest.raises(ValueError, match="padding"):
        Letterbox.from_outputs({"original_size": outputs["original_size"], "scale": outputs["scale"]})


@pytest.mark.parametrize("field,value", [("scale", 0.0), ("orig_height", -1.0), ("pad_top", float("nan"))])
def test_bad_values_are_named(field, value):
    args = dict(scale=0.5, pad_top=0.0, pad_left=0.0, orig_height=10, orig_width=10)
    args[field] = value
    with pytest.raises(ValueError, match=f"letterbox.{field}"):
        Letterbox(**args)
    with pytest.raises(ValueError, match="got 3 values"):
        Letterbox.from_vector([1.0, 0.0, 0.0])


def test_mask_to_original_undoes_the_letterbox_of_a_block():
    # a 40 x 20 original block at rows 10..49, cols 4..23 of a 100 x 50 original, scaled by 2 into
    # a 200 x 120 frame (pad_left 10): in the model frame rows 20..99, cols 18..57
    lb = Letterbox(2.0, 0.0, 10.0, 100, 50)
    model = np.zeros(lb.model_size, np.uint8)
    model[20:100, 18:58] = 7
    back = lb.mask_to_original(model)
    expected = np.zeros((100, 50), np.uint8)
    expected[10:50, 4:24] = 7
    np.testing.assert_array_equal(back, expected)
    grid = np.zeros((2, 2), np.float32)
    grid[0, :] = 1.0  # top half of the model frame
    up = lb.grid_to_original(grid)
    assert up.shape == (100, 50) and up[5, 25] == pytest.approx(1.0) and up[95, 25] == pytest.approx(0.0)
