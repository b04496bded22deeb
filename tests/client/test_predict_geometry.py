"""A geometry-head model: predict's JSON and overlay carry the reported curves' end vertebrae, and
predict and evaluate read the same `Prediction` (identical angles, end vertebrae, measurable flag)."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from seg4reg_tf.client.predict import LocalPredictor, load_input, run_predict
from seg4reg_tf.export.prediction import Prediction
from seg4reg_tf.export.savedmodel import export_model
from seg4reg_tf.geometry import VERTEBRA_NAMES
from seg4reg_tf.models.seg4reg_plus import Seg4RegPlus
from tests.export import helpers_export as he
from tests.fixtures import set_seed, tiny_data_config, tiny_model_config, write_spine_records

SIZE = (128, 64)


@pytest.fixture(scope="module")
def geometry_model(tmp_path_factory):

    set_seed(3)
    model = Seg4RegPlus(tiny_model_config(geometry_head=True, head="geometry", seg_depth=3),
                        preprocessing=tiny_data_config(image_size=SIZE))
    base = tmp_path_factory.mktemp("geo") / "seg4reg"
    export_model(model, base, 1)
    return base


@pytest.mark.slow
@pytest.mark.numeric
def test_predict_and_evaluate_agree_on_the_reported_curves(geometry_model, tmp_path):
    from seg4reg_tf.evaluation.evaluate import evaluate_saved_model

    records = write_spine_records(tmp_path / "in", n=2)
    out = tmp_path / "out"
    assert run_predict([r.image_path for r in records], out, LocalPredictor(geometry_model), progress=False) == 0
    # one film per call, as predict sends them: a batch of 2 rounds the untrained model's near-flat tilts
    # differently (0.004 deg on one seed), which is the batching's business, not the reader's
    report = evaluate_saved_model(str(geometry_model), records, str(tmp_path / "eval"), batch_size=1,
                                  make_plots=False)
    with open(tmp_path / "eval" / "cases.csv") as f:
        cases = {row["file"]: row for row in csv.DictReader(f)}
    raw = LocalPredictor(geometry_model).predict([load_input(records[0].image_path).model_bytes])
    for rec in records:
        result = json.loads((out / f"img {rec.filename[4]} A AP.json").read_text())
        assert result["reported_head"] == "geometry"
        assert set(result["curves"]) == {"PT", "MT", "TL"}
        case = cases[rec.filename]
        for j, name in enumerate(("pt", "mt", "tl")):
            assert float(case[f"reported_{name}"]) == pytest.approx(result["angles"][name.upper()], abs=1e-3)
        ends = " ".join(f"{k}:{c['end_vertebrae']}" for k, c in result["curves"].items())
        assert case["end_vertebrae"] == ends
        assert len(result["vertebrae"]["landmarks"]) == 68
    # the JSON's end vertebrae are the SavedModel's `end_vertebrae` output of the reported head
    first = json.loads((out / "img 0 A AP.json").read_text())
    ends0 = raw["end_vertebrae"][0]
    assert [first["curves"][k]["upper"] for k in ("PT", "MT", "TL")] == [VERTEBRA_NAMES[u] for u in ends0[:, 0]]
    np.testing.assert_allclose([first["angles"][k] for k in ("PT", "MT", "TL")], raw["cobb_angles_geometry"][0],
                               atol=1e-4)
    assert report["heads"]["geometry"]["n"] == 2


def test_a_regression_head_reports_no_end_vertebrae():
    """The overlay used to draw the fitted vertebrae's curves above a regression head's numbers."""
    model = he.oracle_model((64, 32))
    raw = {k: np.asarray(v) for k, v in model(np.zeros((1, 64, 32, 1), "float32")).items()}
    raw.update(original_size=np.array([[64, 32]]), scale=np.array([1.0]), padding=np.zeros((1, 2)))
    pred = Prediction.from_outputs(raw)
    assert pred.reported_head == "regression" and pred.curves == ()


def test_a_geometry_head_that_is_not_reported_gives_no_curves():
    angles = np.array([[30.0, 10.0, 20.0]], "float32")
    raw = {"cobb_angles": angles, "cobb_angles_geometry": angles + 1,
           "end_vertebrae": np.array([[[3, 9], [0, 3], [9, 16]]]),
           "original_size": np.array([[64, 32]]), "scale": np.array([1.0]), "padding": np.zeros((1, 2))}
    assert Prediction.from_outputs(raw).curves == ()
    raw["cobb_angles_geometry"] = angles
    pred = Prediction.from_outputs(raw)
    assert [(c.name, c.upper, c.lower, c.end_vertebrae) for c in pred.curves] == [
        ("PT", 3, 9, "T4-T10"), ("MT", 0, 3, "T1-T4"), ("TL", 9, 16, "T10-L5")]


def test_the_fused_head_reports_the_geometry_heads_end_vertebrae():
    model = Seg4RegPlus(tiny_model_config(geometry_head=True, head="fused"), image_size=(64, 32))
    raw = {k: np.asarray(v) for k, v in model(np.random.default_rng(0).random((1, 64, 32, 1), "float32")).items()}
    np.testing.assert_allclose(raw["cobb_angles"],
                               0.5 * (raw["cobb_angles_geometry"] + raw["cobb_angles_segmentation"]),
                               atol=1e-5)
    raw.update(original_size=np.array([[64, 32]]), scale=np.array([1.0]), padding=np.zeros((1, 2)))
    pred = Prediction.from_outputs(raw)
    assert pred.reported_head == "fused"
    assert [(c.upper, c.lower) for c in pred.curves] == [tuple(e) for e in raw["end_vertebrae"][0]]
    np.testing.assert_allclose([c.angle for c in pred.curves], raw["cobb_angles"][0], atol=1e-6)
