"""A model exported with intervals: `predict` writes each angle's interval in its JSON, summary.csv and
overlay label and prints a line per image; `evaluate` reports coverage and mean width per angle from the
same Prediction values, and plots width against error."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from seg4reg_tf.client.predict import LocalPredictor, run_predict, summary_line
from seg4reg_tf.evaluation.report import interval_metrics
from seg4reg_tf.export.prediction import Curve
from tests.export.test_intervals import exported, spine_images  # noqa: F401  (the fixture: a model with intervals)


def test_interval_metrics_by_hand():
    lower = [[1.0, 0.0, np.nan], [5.0, 2.0, np.nan], [0.0, 0.0, 1.0]]
    upper = [[3.0, 4.0, np.nan], [9.0, 6.0, np.nan], [2.0, 1.0, 5.0]]
    true = [[2.0, 5.0, 3.0], [9.0, 2.0, 4.0], [2.5, 0.5, 2.0]]
    m = interval_metrics(lower, upper, true)
    assert m["PT"] == {"n": 3, "coverage": pytest.approx(2 / 3), "mean_width": pytest.approx(8 / 3), "n_without": 0}
    assert m["MT"]["coverage"] == pytest.approx(2 / 3) and m["MT"]["mean_width"] == pytest.approx(3.0)
    assert m["TL"] == {"n": 1, "coverage": 1.0, "mean_width": 4.0, "n_without": 2}
    with pytest.raises(ValueError, match="equal shapes"):
        interval_metrics(lower, upper, true[:2])


def test_curve_label_shows_the_interval():
    assert Curve("PT", 47.34, 4, 10, (43.06, 52.01)).label == "47.3 deg (43.1-52.0)"
    assert Curve("PT", 47.34, 4, 10).label == "47.3 deg"
    assert Curve("PT", 47.34, 4, 10, (43.06, 52.01)).to_json()["interval"] == [43.06, 52.01]


def test_prediction_gives_each_curve_its_interval_and_none_without_one():
    from seg4reg_tf.export.prediction import Prediction

    out = {"cobb_angles": [[20.0, 10.0, 5.0]], "cobb_angles_geometry": [[20.0, 10.0, 5.0]],
           "end_vertebrae": [[[2, 8], [8, 12], [12, 16]]], "cobb_angles_lower": [[15.0, 6.0, np.nan]],
           "cobb_angles_upper": [[25.0, 14.0, np.nan]], "original_size": [[300, 140]], "scale": [0.4],
           "padding": [[0.0, 4.0]]}
    pred = Prediction.from_outputs(out)
    np.testing.assert_array_equal(pred.intervals, [[15.0, 25.0], [6.0, 14.0], [np.nan, np.nan]])
    assert [c.interval for c in pred.curves] == [(15.0, 25.0), (6.0, 14.0), None]
    assert pred.curves[0].label == "20.0 deg (15.0-25.0)"


@pytest.mark.slow
def test_predict_and_evaluate_carry_the_intervals(exported, tmp_path, capsys):  # noqa: F811
    import os

    import cv2

    from seg4reg_tf.data.aasce import AasceRecord
    from seg4reg_tf.evaluation.evaluate import evaluate_saved_model

    (tmp_path / "in").mkdir()
    records = []
    for i, (png, lm, angles) in enumerate(spine_images(3)):
        path = tmp_path / "in" / f"spine{i}.png"
        path.write_bytes(png)
        records.append(AasceRecord(filename=path.name, image_path=str(path), height=300, width=140, landmarks=lm,
                                   angles=angles))
    blank = tmp_path / "in" / "blank.png"
    cv2.imwrite(str(blank), np.zeros((300, 140), np.uint8))
    out = tmp_path / "out"
    base = os.path.dirname(exported)
    capsys.readouterr()
    assert run_predict([tmp_path / "in"], out, LocalPredictor(base), progress=False) == 0
    printed = capsys.readouterr().out.splitlines()
    results = {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")}
    assert results["blank"]["measurable"] is False and results["blank"]["intervals"] == {
        "PT": None, "MT": None, "TL": None}
    assert all(results[f"spine{i}"]["measurable"] for i in range(3))
    for name, result in results.items():
        assert result["schema_version"] == 4
        assert summary_line(f"{name}.png", result) in printed  # one printed line per image
        for k, span in result["intervals"].items():
            assert (span is None) == (name == "blank")
            if span is not None:
                assert span[0] <= result["angles"][k] <= span[1] and span[0] >= 0
        assert result["curves"] is None  # the oracle has no end vertebrae (Prediction's test covers curves)
    with open(out / "summary.csv") as f:
        rows = {r["file"]: r for r in csv.DictReader(f)}
    assert rows["blank.png"]["PT_lower"] == ""

    report = evaluate_saved_model(base, records, str(tmp_path / "eval"))
    spans = np.array([[results[r.filename[:-4]]["intervals"][k] or [np.nan, np.nan] for k in ("PT", "MT", "TL")]
                      for r in records], dtype=np.float64)  # [3 images, 3 angles, (lower, upper)]
    true = np.array([r.angles for r in records])
    want = interval_metrics(spans[..., 0], spans[..., 1], true)
    assert want["PT"]["n"] == 3
    for k in ("PT", "MT", "TL"):
        assert report["intervals"][k] == pytest.approx(want[k])
    assert "interval_width.png" in report["plots"] and (tmp_path / "eval" / "interval_width.png").is_file()
