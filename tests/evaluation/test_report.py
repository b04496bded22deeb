import json

import numpy as np
import pytest

from seg4reg_tf.evaluation.plots import plot_bland_altman, plot_pred_vs_true
from seg4reg_tf.evaluation.report import head_metrics, per_image_smape, write_cases_csv, write_report


def test_head_metrics_skip_failed_rows():
    true = np.array([[10.0, 5.0, 5.0], [20.0, 10.0, 0.0], [30.0, 0.0, 30.0]])
    pred = np.array([[12.0, 5.0, 5.0], [np.nan] * 3, [30.0, 3.0, 30.0]])
    m = head_metrics(pred, true)
    assert m["n"] == 2
    assert m["smape"] == pytest.approx(100 * (2 / 42 + 3 / 123) / 2)
    assert (m["mae_pt"], m["mae_mt"], m["mae_tl"]) == pytest.approx((1.0, 1.5, 0.0))
    assert np.isnan(per_image_smape(pred, true)[1])
    assert head_metrics(np.full((2, 3), np.nan), true[:2])["smape"] is None


def test_writers_turn_nan_into_null_and_empty(tmp_path):
    write_report({"a": float("nan"), "b": np.float32(1.5), "c": np.arange(2)}, str(tmp_path / "r.json"))
    assert json.loads((tmp_path / "r.json").read_text()) == {"a": None, "b": 1.5, "c": [0, 1]}
    write_cases_csv([{"file": "x y.jpg", "v": float("nan"), "w": 2.0}], str(tmp_path / "c.csv"))
    assert (tmp_path / "c.csv").read_text().splitlines() == ["file,v,w", "x y.jpg,,2.0000"]


def test_plots_are_pngs(tmp_path):
    rng = np.random.default_rng(0)
    t = rng.uniform(0, 60, (10, 3))
    p = t + rng.normal(0, 3, (10, 3))
    p[0] = np.nan  # failed rows are left out, not plotted as NaN
    for fn, name in ((plot_pred_vs_true, "a.png"), (plot_bland_altman, "b.png")):
        data = open(fn(p, t, str(tmp_path / name), "t"), "rb").read()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
