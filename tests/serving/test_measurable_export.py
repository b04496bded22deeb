"""Issue 12 (4, 6): the exported signatures carry the measurability score; bad inputs never reach
TensorFlow's logs; `seg4reg predict` says when it cannot measure."""
from __future__ import annotations

import json

import cv2
import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from tests.export import helpers_export as he
from tests.fixtures import label_encoded_png16, label_map_spine

SECRET = b"PATIENT^SECRET^NAME"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    base = tmp_path_factory.mktemp("m") / "seg4reg"
    path = he.export_oracle(str(base), 1)
    return str(base), tf.saved_model.load(path)


def _black_jpeg():
    return cv2.imencode(".jpg", np.zeros((300, 150), np.uint8))[1].tobytes()


def test_signatures_expose_measurable_score(exported):
    _, loaded = exported
    _, labels = label_map_spine(256, 128)
    spine = label_encoded_png16(labels)
    out = loaded.signatures["serving_default"](image_bytes=tf.constant([spine, _black_jpeg()]))
    score = out["measurable_score"].numpy()
    reason = [r.decode() for r in out["measurable_reason"].numpy()]
    assert score.shape == (2,) and np.all(np.isfinite(score))
    assert score[1] < 0.5 and reason[1].startswith("blank"), reason
    assert not reason[0].startswith(("blank", "no spine")), reason  # the oracle segments all 17
    image = np.full((1, he.H, he.W, 1), 0.5, np.float32)
    out = loaded.signatures["predict_image"](image=tf.constant(image))
    assert out["measurable_score"].numpy()[0] < 0.5 and b"blank" in out["measurable_reason"].numpy()[0]
    image[0, 3, 3, 0] = np.nan
    with pytest.raises(tf.errors.InvalidArgumentError, match="image: pixel values must be finite"):
        loaded.signatures["predict_image"](image=tf.constant(image))


@pytest.mark.slow
def test_predict_example_garbage_is_refused_without_logging_it(exported, capfd, caplog):
    from seg4reg_tf.serving.server import ModelServer, ServerConfig

    base, _ = exported
    config = ServerConfig(model_base_path=base, port=0, rest_port=-1, enable_warmup=False)
    with ModelServer(config) as server:
        channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        capfd.readouterr()
        for bad in (b"\xff\xfe garbage " + SECRET * 50, b"\x0a\x05" + SECRET):
            req = predict_pb2.PredictRequest()
            req.model_spec.name = "seg4reg"
            req.model_spec.signature_name = "predict_example"
            req.inputs["examples"].CopyFrom(tf.make_tensor_proto([bad], dtype=tf.string))
            with pytest.raises(grpc.RpcError) as err:
                stub.Predict(req, timeout=30)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "'examples'" in err.value.details() and SECRET.decode() not in err.value.details()
        channel.close()
    logs = capfd.readouterr()
    assert SECRET.decode() not in logs.out + logs.err and SECRET.decode() not in caplog.text


def test_cli_predict_json_and_overlay_say_not_measurable(exported, tmp_path):
    from seg4reg_tf.cli import main

    base, _ = exported
    (tmp_path / "black.jpg").write_bytes(_black_jpeg())
    assert main(["predict", str(tmp_path / "black.jpg"), "--model", base, "--out", str(tmp_path / "o")]) == 0
    raw = (tmp_path / "o" / "black.json").read_text()
    result = json.loads(raw, parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}"))
    assert result["measurable"] is False and result["reason"].startswith("blank")
    assert 0 <= result["measurable_score"] < 0.5


def test_predict_computes_the_score_for_models_exported_before_it():
    """An older SavedModel (no measurable_* outputs): `predict` decides from the outputs it has."""
    from seg4reg_tf.client.predict import InputImage, measurability

    item = InputImage("x.png", "x", b"", np.zeros((300, 150), np.uint8), None, "png")
    outputs = {"cobb_angles": np.array([[30.0, 20.0, 10.0]], np.float32),
               "vertebra_labels": np.zeros((1, he.H, he.W), np.uint8), "consistency": np.array([1.0], np.float32)}
    score, reason = measurability(item, outputs)
    assert score < 0.5 and reason.startswith("blank")
