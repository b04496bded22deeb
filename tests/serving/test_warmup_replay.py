"""Model warmup in `seg4reg serve`: assets.extra/tf_serving_warmup_requests replayed before serving."""
from __future__ import annotations

import argparse
import os

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_log_pb2,
    prediction_service_pb2_grpc,
)

from seg4reg_tf.export import warmup_records as warmup_mod
from seg4reg_tf.export.layout import WARMUP_RELPATH
from seg4reg_tf.export.warmup_records import prediction_log, write_warmup_requests
from seg4reg_tf.serving.core import PredictionCore
from seg4reg_tf.serving.manager import ModelManager
from seg4reg_tf.serving.model_config import VersionPolicy
from seg4reg_tf.serving.server import ModelServer, ServerConfig

AVAILABLE = get_model_status_pb2.ModelVersionStatus.State.Value("AVAILABLE")
END = get_model_status_pb2.ModelVersionStatus.State.Value("END")


class CountingModel(tf.Module):
    """`image_bytes` tf.string [B] (decimal numbers) -> `value` float32 [B], `calls` int64 [B]:
    how many times the graph has run, this run included. Non-numeric strings fail at run time."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = tf.Variable(0, dtype=tf.int64)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve(self, image_bytes):
        n = self.calls.assign_add(1)
        return {"value": tf.strings.to_number(image_bytes), "calls": tf.fill(tf.shape(image_bytes), n)}


def save_counting_version(base: str, version: int, warmup: list[bytes] | None = None,
                          raw_warmup: bytes | None = None) -> str:
    """BASE/<version>/ with an optional warmup file (write_warmup_requests of `warmup`, or raw bytes)."""
    os.makedirs(base, exist_ok=True)
    tmp = os.path.join(base, f".tmp-{version}")
    model = CountingModel()
    tf.saved_model.save(model, tmp, signatures={"serving_default": model.serve})
    if warmup is not None:
        write_warmup_requests(os.path.join(tmp, WARMUP_RELPATH), warmup)
    if raw_warmup is not None:
        os.makedirs(os.path.join(tmp, "assets.extra"))
        with open(os.path.join(tmp, WARMUP_RELPATH), "wb") as f:
            f.write(raw_warmup)
    final = os.path.join(base, str(version))
    os.rename(tmp, final)
    return final


def write_logs(path: str, logs) -> None:
    with tf.io.TFRecordWriter(path) as writer:
        for entry in logs:
            writer.write(entry.SerializeToString())


def grpc_request(value: bytes = b"7", version: int | None = None) -> predict_pb2.PredictRequest:
    req = predict_pb2.PredictRequest()
    req.model_spec.name = "seg4reg"
    if version is not None:
        req.model_spec.version.value = version
    req.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto([value], dtype=tf.string))
    return req


def first_calls(manager: ModelManager, version: int) -> int:
    out = PredictionCore().predict(manager.versions()[version], "",
                                          {"image_bytes": np.array([b"5"], dtype=object)})
    assert out["value"].tolist() == [5.0]
    return int(out["calls"][0])


@pytest.mark.slow
def test_warmup_replayed_before_first_client_request(tmp_path):
    base = str(tmp_path / "models")
    # write_warmup_requests: one request per value + one batched request = 3 records -> 3 model runs
    save_counting_version(base, 1, warmup=[b"1", b"2"])
    config = ServerConfig(model_base_path=base, port=0, rest_port=-1, poll_seconds=60, batch_timeout_ms=1)
    with ModelServer(config) as server:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
                get_model_status_pb2.GetModelStatusRequest(model_spec=grpc_request().model_spec), timeout=30)
            assert [(s.version, s.state) for s in status.model_version_status] == [(1, AVAILABLE)]
            response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
                grpc_request(b"7"), timeout=30)
    assert tf.make_ndarray(response.outputs["value"]).tolist() == [7.0]
    assert tf.make_ndarray(response.outputs["calls"]).tolist() == [4]  # 3 warmup runs, then this one


def test_no_warmup_config_and_cli_flag(tmp_path):
    base = str(tmp_path / "models")
    save_counting_version(base, 1, warmup=[b"1", b"2"])
    manager = ModelManager(ServerConfig(model_base_path=base, enable_warmup=False, enable_batching=False))
    manager.scan()
    assert first_calls(manager, 1) == 1
    manager.stop()
    with pytest.raises(ValueError, match="enable_warmup"):
        ServerConfig(model_base_path=base, enable_warmup="no")

    from seg4reg_tf.serving.cli import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    assert parser.parse_args(["serve", "--model-base-path", base, "--no-warmup"]).no_warmup is True
    assert parser.parse_args(["serve", "--model-base-path", base]).no_warmup is False
    from seg4reg_tf.serving.serve_flags import config_from_args

    for flags, enabled in ([], True), (["--no-warmup"], False), (["--enable_model_warmup=false"], False), \
            (["--enable_model_warmup"], True), (["--enable_model_warmup", "true"], True):
        args = parser.parse_args(["serve", "--model_base_path", base, *flags])
        assert config_from_args(args).enable_warmup is enabled, flags


@pytest.mark.slow
def test_corrupt_warmup_file_fails_that_version_and_server_keeps_serving(tmp_path):
    base = str(tmp_path / "models")
    save_counting_version(base, 1)  # no warmup file: loads without replay
    save_counting_version(base, 2, raw_warmup=b"this is not a TFRecord file at all")
    config = ServerConfig(model_base_path=base, port=0, rest_port=-1, poll_seconds=60,
                          version_policy=VersionPolicy.every())
    with ModelServer(config) as server:
        assert sorted(server.manager.versions()) == [1]
        error = server.manager.failed()[2]
        assert "warmup failed" in error and "tf_serving_warmup_requests" in error
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
                grpc_request(b"3"), timeout=30)
            assert response.model_spec.version.value == 1  # latest *served* version
            assert tf.make_ndarray(response.outputs["calls"]).tolist() == [1]
            status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
                get_model_status_pb2.GetModelStatusRequest(model_spec=grpc_request().model_spec), timeout=30)
            states = {s.version: (s.state, s.status.error_message) for s in status.model_version_status}
            assert states[1][0] == AVAILABLE
            assert states[2][0] == END and "warmup failed" in states[2][1]
            # fixing the file changes the version's fingerprint: the next poll retries and warms it up
            write_logs(os.path.join(base, "2", WARMUP_RELPATH), [prediction_log([b"4"])])
            server.manager.scan()
            assert sorted(server.manager.versions()) == [1, 2] and 2 not in server.manager.failed()
            response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
                grpc_request(b"3"), timeout=30)
            assert response.model_spec.version.value == 2
            assert tf.make_ndarray(response.outputs["calls"]).tolist() == [2]  # 1 warmup run + this one


def _bad_input_name():
    entry = prediction_log([b"1"])
    request = entry.predict_log.request
    request.inputs["pixels"].CopyFrom(request.inputs.pop("image_bytes"))
    return entry


@pytest.mark.parametrize("logs, text", [
    (lambda: [prediction_log([b"1"]), prediction_log([b"not a number"])], "record 1"),  # fails in the graph
    (lambda: [_bad_input_name()], "input tensor alias not found"),
    (lambda: [prediction_log([b"1"], signature="nope")], "'nope' not found"),
    (lambda: [prediction_log_pb2.PredictionLog()], "unsupported log_type None"),
])
def test_failing_warmup_request_fails_the_load(tmp_path, logs, text):
    base = str(tmp_path / "models")
    path = save_counting_version(base, 1)
    write_logs(_mk(path), logs())
    manager = ModelManager(ServerConfig(model_base_path=base, enable_batching=False))
    manager.scan()
    assert manager.versions() == {}
    assert "warmup failed" in manager.failed()[1] and text in manager.failed()[1]


def _mk(path: str) -> str:
    os.makedirs(os.path.join(path, "assets.extra"), exist_ok=True)
    return os.path.join(path, WARMUP_RELPATH)


def test_more_records_than_the_limit_fail_before_running(tmp_path, monkeypatch):
    base = str(tmp_path / "models")
    save_counting_version(base, 1, warmup=[b"1", b"2"])  # 3 records > 2
    monkeypatch.setattr(warmup_mod, "MAX_WARMUP_RECORDS", 2)  # the reader's limit (the writer shares it)
    manager = ModelManager(ServerConfig(model_base_path=base, enable_batching=False))
    manager.scan()
    assert manager.versions() == {}
    assert "exceeds the maximum (2)" in manager.failed()[1]
    monkeypatch.setattr(warmup_mod, "MAX_WARMUP_RECORDS", 3)  # exactly at the limit: loads
    os.utime(os.path.join(base, "1", WARMUP_RELPATH), ns=(1, 1))  # new fingerprint -> retry
    manager.scan()
    assert first_calls(manager, 1) == 4
    manager.stop()
