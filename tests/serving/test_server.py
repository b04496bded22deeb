"""The local TF-Serving-compatible server over gRPC (tensorflow_serving.apis stubs only): Predict,
metadata, status, bad requests, version watching."""
from __future__ import annotations

import os
import shutil
import struct
import time
import zlib

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from seg4reg_tf.serving.model_config import VersionPolicy
from seg4reg_tf.serving.server import ModelServer, ServerConfig
from tests.serving.served import GOOD, OPTIONS, WHITE, check_good, outputs, request
from tests.serving.serving_testmodel import png, save_version

pytestmark = pytest.mark.slow  # every test here starts a server


# -- gRPC PredictionService -------------------------------------------------------------------
def test_predict_matches_savedmodel_in_process(served):
    resp = served["predict"].Predict(request([GOOD, WHITE]), timeout=30)
    assert resp.model_spec.name == "seg4reg" and resp.model_spec.version.value == 2  # newest
    assert resp.model_spec.signature_name == "serving_default"
    got = outputs(resp)
    loaded = tf.saved_model.load(os.path.join(served["base"], "2"))
    want = loaded.signatures["serving_default"](image_bytes=tf.constant([GOOD, WHITE]))
    assert set(got) == {"cobb_angles", "vertebra_labels", "batch_size"}
    for key in got:
        np.testing.assert_array_equal(got[key], want[key].numpy())
    # by hand: half-white image -> mean 0.5, white -> 1.0; gain 2 for version 2
    np.testing.assert_allclose(got["cobb_angles"], [[10, 20, 30], [20, 40, 60]], rtol=1e-6)
    assert got["vertebra_labels"].dtype == np.uint8 and got["vertebra_labels"].shape == (2, 16, 8)
    np.testing.assert_array_equal(got["vertebra_labels"][0, 5], [3, 3, 3, 3, 0, 0, 0, 0])


def test_explicit_version_label_and_second_signature(served):
    out = outputs(served["predict"].Predict(request([GOOD], version=1), timeout=30))
    np.testing.assert_allclose(out["cobb_angles"], [[5, 10, 15]], rtol=1e-6)
    out = outputs(served["predict"].Predict(request([GOOD], label="stable"), timeout=30))
    np.testing.assert_allclose(out["cobb_angles"], [[5, 10, 15]], rtol=1e-6)
    req = predict_pb2.PredictRequest()
    req.model_spec.name = "seg4reg"
    req.model_spec.signature_name = "predict_image"
    req.inputs["image"].CopyFrom(tf.make_tensor_proto(np.full((3, 16, 8, 1), 0.25, np.float32)))
    out = outputs(served["predict"].Predict(req, timeout=30))
    np.testing.assert_allclose(out["cobb_angles"], np.tile([[5.0, 10.0, 15.0]], (3, 1)), rtol=1e-6)


def test_output_filter(served):
    resp = served["predict"].Predict(request([GOOD], output_filter=["cobb_angles"]), timeout=30)
    assert list(resp.outputs) == ["cobb_angles"]


def test_get_model_metadata_returns_signature_defs(served):
    req = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    req.model_spec.name = "seg4reg"
    resp = served["predict"].GetModelMetadata(req, timeout=30)
    assert resp.model_spec.version.value == 2
    sigs = get_model_metadata_pb2.SignatureDefMap()
    assert resp.metadata["signature_def"].Unpack(sigs)
    assert set(sigs.signature_def) == {"serving_default", "predict_image"}
    sd = sigs.signature_def["serving_default"]
    assert sd.method_name == "tensorflow/serving/predict"
    assert sd.inputs["image_bytes"].dtype == tf.string.as_datatype_enum
    assert [d.size for d in sd.inputs["image_bytes"].tensor_shape.dim] == [-1]
    assert [d.size for d in sd.outputs["vertebra_labels"].tensor_shape.dim] == [-1, 16, 8]
    assert sd.outputs["vertebra_labels"].dtype == tf.uint8.as_datatype_enum


def test_get_model_status_available(served):
    req = get_model_status_pb2.GetModelStatusRequest()
    req.model_spec.name = "seg4reg"
    resp = served["model"].GetModelStatus(req, timeout=30)
    got = {s.version: s.state for s in resp.model_version_status}
    available = get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert got == {1: available, 2: available}
    req.model_spec.version.value = 1
    assert [s.version for s in served["model"].GetModelStatus(req, timeout=30).model_version_status] == [1]


def _bad_requests():
    """(label, request builder, expected code, substring of the message)."""
    INV, NF = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND

    def with_input(name, proto):
        def build():
            req = request(images=None)
            req.inputs[name].CopyFrom(proto)
            return req
        return build

    def truncated_content():
        proto = tf.make_tensor_proto(np.zeros((1, 16, 8, 1), np.float32))
        proto.tensor_content = proto.tensor_content[:-3]
        req = request(images=None, signature="predict_image")
        req.inputs["image"].CopyFrom(proto)
        return req

    def enormous_shape():
        proto = tf.make_tensor_proto(np.zeros((1, 16, 8, 1), np.float32))
        proto.tensor_shape.dim[0].size = 1 << 40
        proto.tensor_content = b""
        req = request(images=None, signature="predict_image")
        req.inputs["image"].CopyFrom(proto)
        return req

    def wrong_dim():
        req = request(images=None, signature="predict_image")
        req.inputs["image"].CopyFrom(tf.make_tensor_proto(np.zeros((1, 16, 9, 1), np.float32)))
        return req

    def extra_input():
        req = request([GOOD])
        req.inputs["bogus"].CopyFrom(tf.make_tensor_proto([1.0]))
        return req

    truncated_png = GOOD[: len(GOOD) // 2]

    def huge_png_header(size):  # a valid PNG header declaring size x size pixels, almost no data
        ihdr = struct.pack(">IIBBBBB", size, size, 8, 0, 0, 0, 0)
        data = zlib.compress(b"\x00" * 100)
        return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr
                + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)) + struct.pack(">I", len(data)) + b"IDAT"
                + data + struct.pack(">I", zlib.crc32(b"IDAT" + data)))

    return [
        ("unknown model", lambda: request(name="nope"), NF, "nope"),
        ("unknown version", lambda: request(version=99), NF, "99"),
        ("incomplete version dir", lambda: request(version=7), NF, "7"),
        ("unknown signature", lambda: request(signature="nope"), NF, "nope"),
        ("unknown label", lambda: request(label="nope"), INV, "nope"),
        ("no inputs", lambda: request(images=None), INV, "no inputs"),
        ("unknown input", extra_input, INV, "bogus"),
        ("missing input", with_input("bogus", tf.make_tensor_proto([b"x"])), INV, "bogus"),
        ("wrong dtype", with_input("image_bytes", tf.make_tensor_proto([1.0, 2.0], dtype=tf.float32)), INV,
         "DT_STRING"),
        ("wrong rank", with_input("image_bytes", tf.make_tensor_proto([[GOOD]])), INV, "rank"),
        ("scalar", with_input("image_bytes", tf.make_tensor_proto(GOOD)), INV, "rank"),
        ("wrong fixed dim", wrong_dim, INV, "dimension 2"),
        ("truncated tensor_content", truncated_content, INV, "tensor_content"),
        ("enormous declared shape", enormous_shape, INV, "bytes"),
        ("garbage bytes", lambda: request([b"\x00\xff" * 50]), INV, "Unknown image file format"),
        ("empty bytes", lambda: request([b""]), INV, "empty"),
        ("text", lambda: request([b"hello, I am not an image"]), INV, "Unknown image file format"),
        ("truncated png", lambda: request([truncated_png]), INV, "PNG"),
        ("png declaring 46000^2 pixels", lambda: request([huge_png_header(46000)]), INV, "max-request-pixels"),
        ("png declaring 8000^2 pixels, no data", lambda: request([huge_png_header(8000)]), INV, "PNG"),
        ("bad output_filter", lambda: request(output_filter=["nope"]), INV, "nope"),
        ("mixed batch", lambda: request([GOOD, b"junk", GOOD]), INV, "batch item 1 of 3 is invalid: Unknown image"),
    ]


@pytest.mark.parametrize("label,build,code,text", _bad_requests(), ids=[b[0] for b in _bad_requests()])
def test_bad_requests_get_clear_errors_and_server_stays_up(served, label, build, code, text):
    with pytest.raises(grpc.RpcError) as info:
        served["predict"].Predict(build(), timeout=30)
    assert info.value.code() == code, info.value.details()
    assert text in info.value.details()
    assert info.value.details()  # always says something
    check_good(served["predict"])


def test_large_image_and_unimplemented_apis(served):
    big = png(np.full((3000, 1500), 255, np.uint8))
    out = outputs(served["predict"].Predict(request([big]), timeout=60))
    np.testing.assert_allclose(out["cobb_angles"], [[20, 40, 60]], rtol=1e-6)
    tiny = png(np.full((1, 1), 255, np.uint8))
    out = outputs(served["predict"].Predict(request([tiny]), timeout=60))
    np.testing.assert_allclose(out["cobb_angles"], [[20, 40, 60]], rtol=1e-6)
    with pytest.raises(grpc.RpcError) as info:  # empty batch: a clear error (the real model cannot run [0])
        served["predict"].Predict(request([]), timeout=60)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "empty batch" in info.value.details()
    with pytest.raises(grpc.RpcError) as info:  # no model named: NOT_FOUND, as for Predict
        served["predict"].Classify(classification_pb2.ClassificationRequest(), timeout=10)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name = "seg4reg"
    with pytest.raises(grpc.RpcError) as info:  # TF Serving's answer on a predict signature
        served["predict"].Classify(classify, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == ("Expected classification signature method_name to be "
                                    "tensorflow/serving/classify. Was: tensorflow/serving/predict")
    req = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["nope"])
    req.model_spec.name = "seg4reg"
    with pytest.raises(grpc.RpcError) as info:
        served["predict"].GetModelMetadata(req, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "nope" in info.value.details()


def test_garbage_protobuf_does_not_hurt_the_server(served):
    channel = grpc.insecure_channel(f"127.0.0.1:{served['server'].port}")
    raw = channel.unary_unary("/tensorflow.serving.PredictionService/Predict",
                              request_serializer=lambda b: b, response_deserializer=lambda b: b)
    for junk in (b"\xff" * 64, os.urandom(1000), b"\x0a\xff\xff\xff\xff\x0f"):
        with pytest.raises(grpc.RpcError) as info:
            raw(junk, timeout=10)
        assert info.value.code() != grpc.StatusCode.OK
    channel.close()
    check_good(served["predict"])


# -- version watching -------------------------------------------------------------------------
def test_new_version_loaded_and_removed_version_unloaded(tmp_path):
    base = str(tmp_path / "models")
    save_version(base, 1, gain=1.0)
    events = []
    config = ServerConfig(model_base_path=base, port=0, rest_port=-1, poll_seconds=0.1,
                          version_policy=VersionPolicy.every())
    with ModelServer(config) as server:
        server.manager._on_event = events.append
        channel = grpc.insecure_channel(f"127.0.0.1:{server.port}", options=OPTIONS)
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        check_good(stub, gain=1.0)
        save_version(base, 3, gain=3.0)
        deadline = time.time() + 20
        while 3 not in server.manager.versions() and time.time() < deadline:
            time.sleep(0.1)
        check_good(stub, gain=3.0)  # newest by default
        check_good_version = outputs(stub.Predict(request([GOOD], version=1), timeout=30))
        np.testing.assert_allclose(check_good_version["cobb_angles"], [[5, 10, 15]], rtol=1e-6)
        shutil.rmtree(os.path.join(base, "3"))
        deadline = time.time() + 20
        while 3 in server.manager.versions() and time.time() < deadline:
            time.sleep(0.1)
        with pytest.raises(grpc.RpcError) as info:
            stub.Predict(request([GOOD], version=3), timeout=30)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        check_good(stub, gain=1.0)
        # a broken version is reported (END + error) and never served; the good one keeps serving
        os.makedirs(os.path.join(base, "9"))
        with open(os.path.join(base, "9", "saved_model.pb"), "wb") as f:
            f.write(b"not a SavedModel")
        model_stub = model_service_pb2_grpc.ModelServiceStub(channel)
        status_req = get_model_status_pb2.GetModelStatusRequest()
        status_req.model_spec.name = "seg4reg"
        deadline = time.time() + 20
        while 9 not in server.manager.failed() and time.time() < deadline:
            time.sleep(0.1)
        states = {s.version: s for s in model_stub.GetModelStatus(status_req, timeout=10).model_version_status}
        assert states[9].state == get_model_status_pb2.ModelVersionStatus.END and states[9].status.error_message
        assert states[1].state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
        check_good(stub, gain=1.0)
        shutil.rmtree(os.path.join(base, "9"))
        save_version(base, 9, gain=9.0)  # fixed in place: loaded on a later poll
        deadline = time.time() + 20
        while 9 not in server.manager.versions() and time.time() < deadline:
            time.sleep(0.1)
        check_good(stub, gain=9.0)
        channel.close()
    assert any("loaded model seg4reg version 3" in e for e in events)
    assert any("unloaded model seg4reg version 3" in e for e in events)
