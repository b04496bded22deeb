"""End to end: a real (tiny, untrained) Seg4Reg+ model -> `export_model` -> `ModelServer` -> clients.

The clients here use only `tensorflow_serving.apis` stubs (gRPC) and raw HTTP (REST), never
`seg4reg_tf.client.client`, and the expected outputs come from the same SavedModel loaded
in-process with `tf.saved_model.load(...).signatures["serving_default"]`.
"""
from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request

import cv2
import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2, prediction_service_pb2_grpc

from seg4reg_tf.export.savedmodel import export_model
from seg4reg_tf.models import build_model
from seg4reg_tf.serving.server import ModelServer, ServerConfig
from tests.fixtures import TINY_SIZE as SIZE
from tests.fixtures import check_signatures, sine_spine, spine_xray, tiny_data_config, tiny_model_config

pytestmark = pytest.mark.slow  # exports an untrained model and starts a server

OPTIONS = [("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)]
TOL = 1e-4


def _xray(h: int, w: int, seed: int) -> np.ndarray:
    return spine_xray(h, w, sine_spine(h, w, amplitude=0.1, phase=seed), seed=seed)


def _images() -> list[bytes]:
    """Three encodings of different sizes: 8-bit PNG 200x90, JPEG 150x80, 16-bit PNG 300x120."""
    png8 = cv2.imencode(".png", _xray(200, 90, 0))[1].tobytes()
    ok, jpg = cv2.imencode(".jpg", _xray(150, 80, 1), [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    png16 = cv2.imencode(".png", _xray(300, 120, 2).astype(np.uint16) * 257)[1].tobytes()
    assert png16[:8] == b"\x89PNG\r\n\x1a\n" and png16[24] == 16  # IHDR bit depth: really 16-bit
    assert jpg.tobytes()[:3] == b"\xff\xd8\xff"
    return [png8, jpg.tobytes(), png16]


@pytest.fixture(scope="module")
def e2e(tmp_path_factory):
    keras_seed = 0
    tf.random.set_seed(keras_seed)
    data_cfg = tiny_data_config(clahe=True)
    model = build_model(tiny_model_config(), data_cfg)
    base = tmp_path_factory.mktemp("e2e") / "base"
    version_dir = export_model(model, str(base), 1)
    assert version_dir == str(base / "1")
    images = _images()
    local = tf.saved_model.load(version_dir).signatures["serving_default"]
    expected = {k: v.numpy() for k, v in local(image_bytes=tf.constant(images)).items()}
    config = ServerConfig(model_base_path=str(base), port=0, rest_port=0, poll_seconds=30.0,
                          max_batch_size=8, batch_timeout_ms=2)
    with ModelServer(config) as server:
        channel = grpc.insecure_channel(f"127.0.0.1:{server.port}", options=OPTIONS)
        yield {
            "images": images,
            "expected": expected,
            "stub": prediction_service_pb2_grpc.PredictionServiceStub(channel),
            "rest": f"http://127.0.0.1:{server.rest_port}/v1/models/seg4reg",
        }
        channel.close()


def _predict(stub, images, output_filter=("cobb_angles",)):
    req = predict_pb2.PredictRequest()
    req.model_spec.name = "seg4reg"
    req.model_spec.signature_name = "serving_default"
    req.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto(images, dtype=tf.string, shape=[len(images)]))
    req.output_filter.extend(output_filter)
    resp = stub.Predict(req, timeout=60)
    return resp, {k: tf.make_ndarray(v) for k, v in resp.outputs.items()}


def _post(url: str, body: dict) -> tuple[int, dict]:
    data = json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_local_reference_is_sane(e2e):
    exp = e2e["expected"]
    assert exp["cobb_angles"].shape == (3, 3) and exp["cobb_angles"].dtype == np.float32
    assert np.all(np.isfinite(exp["cobb_angles"]))
    # mapping outputs agree with the encoded sizes (h, w) and the letterbox of 64 x 32
    np.testing.assert_array_equal(exp["original_size"], [[200, 90], [150, 80], [300, 120]])
    np.testing.assert_allclose(exp["scale"], [min(64 / h, 32 / w) for h, w in [(200, 90), (150, 80), (300, 120)]],
                               rtol=1e-6)
    assert exp["vertebra_labels"].shape == (3, 64, 32) and exp["vertebra_labels"].dtype == np.uint8


def test_grpc_predict_matches_in_process(e2e):
    resp, out = _predict(e2e["stub"], e2e["images"], output_filter=())
    assert resp.model_spec.name == "seg4reg" and resp.model_spec.version.value == 1
    assert resp.model_spec.signature_name == "serving_default"
    assert set(out) == set(e2e["expected"])
    np.testing.assert_allclose(out["cobb_angles"], e2e["expected"]["cobb_angles"], atol=TOL, rtol=0)
    np.testing.assert_array_equal(out["original_size"], e2e["expected"]["original_size"])
    # each image alone gives its own row of the batch (no cross-talk through the batch); batch 1 and
    # batch 3 may round differently in the CPU kernels, so this compares at 1e-3 degrees
    for i, data in enumerate(e2e["images"]):
        _, one = _predict(e2e["stub"], [data])
        assert set(one) == {"cobb_angles"}
        np.testing.assert_allclose(one["cobb_angles"][0], e2e["expected"]["cobb_angles"][i], atol=1e-3, rtol=0)


def test_grpc_metadata_has_serving_default(e2e):
    req = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    req.model_spec.name = "seg4reg"
    resp = e2e["stub"].GetModelMetadata(req, timeout=30)
    assert resp.model_spec.version.value == 1
    sigs = get_model_metadata_pb2.SignatureDefMap()
    assert resp.metadata["signature_def"].Unpack(sigs)
    check_signatures(sigs.signature_def, SIZE, attention_size=(SIZE[0] // 8, SIZE[1] // 8))


def test_rest_predict_matches_in_process(e2e):
    b64 = [base64.b64encode(d).decode("ascii") for d in e2e["images"]]
    expected = e2e["expected"]["cobb_angles"]
    # unnamed row format (single-input signature) ...
    status, body = _post(e2e["rest"] + ":predict", {"instances": [{"b64": s} for s in b64]})
    assert status == 200, body
    assert len(body["predictions"]) == 3
    got = np.array([p["cobb_angles"] for p in body["predictions"]], np.float32)
    np.testing.assert_allclose(got, expected, atol=TOL, rtol=0)
    # ... and named row format, the other form TF Serving accepts
    status, body = _post(e2e["rest"] + ":predict",
                         {"signature_name": "serving_default",
                          "instances": [{"image_bytes": {"b64": s}} for s in b64]})
    assert status == 200, body
    got = np.array([p["cobb_angles"] for p in body["predictions"]], np.float32)
    np.testing.assert_allclose(got, expected, atol=TOL, rtol=0)


def test_garbage_bytes_invalid_argument_then_recovers(e2e):
    stub = e2e["stub"]
    with pytest.raises(grpc.RpcError) as info:
        _predict(stub, [b"definitely not an image"])
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "image_bytes" in info.value.details()
    # a bad item in a batch is named, and fails only that request
    with pytest.raises(grpc.RpcError) as info:
        _predict(stub, [e2e["images"][0], b"\x89PNG\r\n\x1a\n" + b"\0" * 40])
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "batch item 1 of 2" in info.value.details()
    # REST maps it to HTTP 400
    status, body = _post(e2e["rest"] + ":predict", {"instances": [{"b64": base64.b64encode(b"junk").decode()}]})
    assert status == 400 and "error" in body
    # the server still answers good requests correctly
    _, out = _predict(stub, e2e["images"])
    np.testing.assert_allclose(out["cobb_angles"], e2e["expected"]["cobb_angles"], atol=TOL, rtol=0)
