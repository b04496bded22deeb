"""Calibrated intervals per angle (`export.intervals`): the constants, the difficulty features and bounds
computed by hand, the conformal quantile, and the SavedModel contract with `cobb_angles_lower/upper`
(float32 [B, 3], lower <= angle <= upper, NaN when not measurable, assets.extra/intervals.json)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import tensorflow as tf

from seg4reg_tf.export.intervals import (
    FEATURES,
    AngleIntervals,
    bounds,
    conformal_quantile,
    difficulty_features,
    read,
)
from seg4reg_tf.export.layout import INTERVALS_RELPATH

F = len(FEATURES)


def _intervals(**kw) -> AngleIntervals:
    w = np.zeros((3, 1 + F))
    w[:, 0] = [2.0, 3.0, 4.0]  # bias: the training MAE
    w[2, 1 + FEATURES.index("heads")] = 1.0  # TL also grows with the heads' disagreement
    kw.setdefault("weights", w.tolist())
    kw.setdefault("floor", [0.1, 0.1, 0.1])
    kw.setdefault("q", [1.0, 2.0, 1.5])
    return AngleIntervals(**kw)


def _outputs(measurable=(0.9, 0.2)) -> dict[str, np.ndarray]:
    tilts = np.zeros((2, 17), np.float32)
    tilts[0, 5] = 4.0  # second differences +4, -8, +4 around vertebra 5: roughness 16 / 15
    visible = np.ones((2, 17), np.float32)
    visible[1, :3] = 0.0
    return {"cobb_angles": np.array([[30.0, 1.0, 10.0], [20.0, 10.0, 5.0]], np.float32),
            "cobb_angles_image": np.array([[33.0, 1.0, 10.0], [20.0, 10.0, 5.0]], np.float32),
            "cobb_angles_segmentation": np.array([[29.0, 1.0, 8.0], [20.0, 10.0, 5.0]], np.float32),
            "cobb_angles_geometry": np.array([[31.0, 1.0, 12.0], [20.0, 10.0, 5.0]], np.float32),
            "vertebra_tilts": tilts, "vertebra_visible": visible,
            "measurable_score": np.array(measurable, np.float32)}


def test_difficulty_features_by_hand():
    x = difficulty_features(_outputs()).numpy()
    assert x.shape == (2, 3, F)
    col = {name: x[..., i] for i, name in enumerate(FEATURES)}
    np.testing.assert_allclose(col["heads"][0], [2.0, 0.0, 4.0])
    np.testing.assert_allclose(col["image"][0], [3.0, 0.0, 0.0])
    np.testing.assert_allclose(col["roughness"][:, 0], [16.0 / 15.0, 0.0], rtol=1e-6)
    np.testing.assert_allclose(col["missing"][:, 1], [0.0, 3.0])
    np.testing.assert_allclose(col["unsure"][:, 2], [0.1, 0.8], rtol=1e-6)
    np.testing.assert_allclose(col["angle"], [[30.0, 1.0, 10.0], [20.0, 10.0, 5.0]])
    with pytest.raises(KeyError, match="vertebra_tilts"):
        difficulty_features({k: v for k, v in _outputs().items() if k != "vertebra_tilts"})


def test_bounds_by_hand_clipped_at_zero_and_nan_when_not_measurable():
    got = {k: v.numpy() for k, v in bounds(_intervals(), _outputs()).items()}
    assert got["cobb_angles_lower"].dtype == np.float32 and got["cobb_angles_upper"].shape == (2, 3)
    # half widths of image 0: PT 1.0 * 2 = 2, MT 2.0 * 3 = 6, TL 1.5 * (4 + 4 heads) = 12
    np.testing.assert_allclose(got["cobb_angles_lower"][0], [28.0, 0.0, 0.0])  # 1 - 6 and 10 - 12 clipped
    np.testing.assert_allclose(got["cobb_angles_upper"][0], [32.0, 7.0, 22.0])
    assert np.all(np.isnan(got["cobb_angles_lower"][1])) and np.all(np.isnan(got["cobb_angles_upper"][1]))


def test_conformal_quantile_is_the_finite_sample_rank():
    scores = np.arange(1.0, 20.0)  # 19 scores: ceil(20 * 0.9) = 18th smallest
    assert conformal_quantile(scores, 0.9) == 18.0
    assert conformal_quantile(scores[:5], 0.9) == math.inf  # too few to promise 90%


def test_constants_round_trip_and_refuse_bad_fields(tmp_path):
    iv = _intervals(fitted="by hand")
    path = tmp_path / "iv.json"
    path.write_text(iv.to_json())
    assert read(str(path)) == iv and read(iv.to_json()) == iv
    bad = json.loads(iv.to_json())
    bad["q"] = [1.0, -1.0, 1.0]
    with pytest.raises(ValueError, match=r"^x.json: intervals.q: expected 3 positive"):
        AngleIntervals.from_json(json.dumps(bad), source="x.json")
    with pytest.raises(ValueError, match=r"intervals.weights: expected 3 x 7"):
        _intervals(weights=[[1.0] * 7] * 2)
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['extra'\]"):
        AngleIntervals.from_json(json.dumps({**json.loads(iv.to_json()), "extra": 1}))
    with pytest.raises(ValueError, match=r"nowhere.json: no such file"):
        read(str(tmp_path / "nowhere.json"))


def geometry_oracle_model():
    """helpers_export's oracle (it segments label-encoded spines exactly, so they are measurable) with the
    geometry outputs the difficulty features read: a geometry head equal to the segmentation head, tilts
    from a dense layer, every vertebra visible."""
    import keras

    from tests.export import helpers_export as he

    base = he.oracle_model()
    out = dict(base.outputs and zip(base.output_names, base.outputs))
    pooled = keras.layers.GlobalAveragePooling2D()(base.inputs["image"] if isinstance(base.inputs, dict)
                                                   else base.inputs[0])
    tilts = keras.layers.Dense(17, name="vertebra_tilts")(keras.layers.Concatenate()([pooled, out["cobb_angles"]]))
    out["cobb_angles_geometry"] = keras.layers.Identity(name="cobb_angles_geometry")(out["cobb_angles_segmentation"])
    out["vertebra_tilts"] = tilts
    out["vertebra_visible"] = keras.layers.Lambda(lambda t: keras.ops.ones_like(t), name="vertebra_visible")(tilts)
    return keras.Model(inputs=base.inputs, outputs=out)


def spine_images(n: int):
    """n label-encoded 16-bit PNG spines (the oracle's input) with their landmarks and official angles; the
    background is a dim grey that still reads as label 0, so the films are not "saturated"."""
    import cv2

    from seg4reg_tf.geometry import cobb_angles
    from tests.fixtures import label_map_spine

    out = []
    for i in range(n):
        lm, labels = label_map_spine(300, 140, phase=0.9 * i)
        grey = np.where(labels > 0, labels.astype(np.uint16) * 3855, 1200).astype(np.uint16)  # 1200: 0.3 of a label
        out.append((cv2.imencode(".png", grey)[1].tobytes(), lm, np.round(cobb_angles(lm, 300), 2)))
    return out


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from seg4reg_tf.export.savedmodel import export_model
    from tests.export import helpers_export as he
    from tests.fixtures import tiny_data_config

    base = tmp_path_factory.mktemp("iv") / "seg4reg"
    return export_model(geometry_oracle_model(), base, 1, preprocessing=tiny_data_config(image_size=he.ORACLE_SIZE),
                        intervals=_intervals(fitted="test"))


def test_savedmodel_returns_the_intervals_in_every_signature(exported):
    import cv2

    from seg4reg_tf.fileio import read_text
    from tests.fixtures import (
        INTERVAL_OUTPUTS,
        MODEL_OUTPUTS,
        check_signatures,
    )

    outputs = MODEL_OUTPUTS + ("cobb_angles_geometry", "vertebra_tilts", "vertebra_visible") + INTERVAL_OUTPUTS
    check_signatures(exported, (128, 64), outputs=outputs)
    loaded = tf.saved_model.load(exported)
    spine = spine_images(1)[0][0]
    blank = cv2.imencode(".png", np.zeros((300, 140), np.uint8))[1].tobytes()
    out = {k: v.numpy() for k, v in loaded.signatures["serving_default"](image_bytes=tf.constant([spine, blank]))
           .items()}
    lo, hi, ang = out["cobb_angles_lower"], out["cobb_angles_upper"], out["cobb_angles"]
    assert lo.dtype == hi.dtype == np.float32 and lo.shape == hi.shape == (2, 3)
    assert out["measurable_score"][1] < 0.5 and np.all(np.isnan(lo[1])) and np.all(np.isnan(hi[1]))
    assert out["measurable_score"][0] >= 0.5, out["measurable_reason"][0]
    assert np.all(lo[0] <= ang[0]) and np.all(ang[0] <= hi[0]) and np.all(lo[0] >= 0) and np.all(hi[0] > lo[0])
    # the same constants as the graph's: recompute from the outputs
    want = {k: v.numpy() for k, v in bounds(_intervals(), out).items()}
    np.testing.assert_allclose(lo, want["cobb_angles_lower"], rtol=1e-5, atol=1e-4)
    image = loaded.signatures["predict_image"](image=tf.zeros([1, 128, 64, 1]))
    assert "cobb_angles_lower" in image and "cobb_angles_upper" in image
    assert read_text(f"{exported}/{INTERVALS_RELPATH}") == _intervals(fitted="test").to_json()


@pytest.mark.slow
def test_served_over_grpc_and_rest_with_no_interval_as_nan_and_null(exported):
    """The local server answers the intervals over both transports; a film that is not measurable gets NaN
    over gRPC and null in REST JSON (which has no NaN), not an error for the whole request."""
    import base64
    import os
    import urllib.request

    import cv2

    from seg4reg_tf.client.client import PredictClient
    from seg4reg_tf.serving.server import ModelServer, ServerConfig

    spine = spine_images(1)[0][0]
    blank = cv2.imencode(".png", np.zeros((300, 140), np.uint8))[1].tobytes()
    config = ServerConfig(model_base_path=os.path.dirname(exported), port=0, rest_port=0)
    with ModelServer(config) as srv:
        by = {}
        for rest, target in ((False, f"127.0.0.1:{srv.port}"), (True, f"127.0.0.1:{srv.rest_port}")):
            by[rest] = PredictClient(target, rest=rest).predict({"image_bytes": [spine, blank]})
        body = json.dumps({"instances": [{"b64": base64.b64encode(blank).decode()}]}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{srv.rest_port}/v1/models/seg4reg:predict", body)
        raw = json.loads(urllib.request.urlopen(req, timeout=30).read())
    for out in by.values():
        assert np.all(np.isnan(out["cobb_angles_lower"][1])) and np.all(np.isnan(out["cobb_angles_upper"][1]))
        assert np.all(np.isfinite(out["cobb_angles_lower"][0])) and np.all(np.isfinite(out["cobb_angles_upper"][0]))
    np.testing.assert_allclose(by[True]["cobb_angles_upper"], by[False]["cobb_angles_upper"], rtol=1e-6)
    assert raw["predictions"][0]["cobb_angles_lower"] == [None, None, None]
