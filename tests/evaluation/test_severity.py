import numpy as np

from seg4reg_tf.evaluation.report import severity_metrics


def test_images_fall_in_the_band_of_their_true_main_curve():
    true = np.array([[10.0, 5, 5], [19.9, 5, 5], [20.0, 10, 10], [45, 20, 25], [75, 30, 45]])
    pred = true.copy()
    pred[1] = [9.9, 5, 5]  # only the second mild image is off
    out = severity_metrics(pred, true)
    assert [out[k]["n"] for k in ("<20", "20-40", "40-60", ">=60")] == [2, 1, 1, 1]
    # SMAPE of the band: image 1 has 100 * 10 / (19.9 + 29.9) %, image 0 has 0
    assert abs(out["<20"]["smape"] - 100 * 10 / 49.8 / 2) < 1e-9
    assert out["20-40"]["smape"] == 0.0 and out[">=60"]["smape"] == 0.0


def test_an_empty_band_says_so():
    out = severity_metrics(np.array([[30.0, 10, 10]]), np.array([[30.0, 10, 10]]))
    assert out["<20"] == {"n": 0, "smape": None}
