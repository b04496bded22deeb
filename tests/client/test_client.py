"""PredictClient over gRPC and REST against the local server, and `seg4reg serve` as a process."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from seg4reg_tf.client.client import PredictClient, ServingClientError
from seg4reg_tf.serving.model_config import VersionPolicy
from seg4reg_tf.serving.server import ModelServer, ServerConfig
from tests.serving.served import GOOD, WHITE
from tests.serving.serving_testmodel import free_port, save_version

pytestmark = pytest.mark.slow  # starts servers (and a `seg4reg serve` process)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = str(tmp_path_factory.mktemp("models"))
    save_version(base, 1, gain=1.0)
    save_version(base, 2, gain=2.0)
    config = ServerConfig(model_base_path=base, port=0, rest_port=0, version_policy=VersionPolicy.every())
    with ModelServer(config) as srv:
        yield srv, base


@pytest.fixture(params=["grpc", "rest"])
def target(request, server):
    srv, _ = server
    return (f"127.0.0.1:{srv.rest_port}", True) if request.param == "rest" else (f"127.0.0.1:{srv.port}", False)


def test_predict_equals_savedmodel(target, server):
    address, rest = target
    with PredictClient(address, rest=rest) as client:
        out = client.predict({"image_bytes": [GOOD, WHITE]})
    loaded = tf.saved_model.load(os.path.join(server[1], "2"))
    want = loaded.signatures["serving_default"](image_bytes=tf.constant([GOOD, WHITE]))
    assert set(out) == set(want)
    for key, value in want.items():
        assert out[key].dtype == value.dtype.as_numpy_dtype, key
        np.testing.assert_array_equal(out[key], value.numpy())
    np.testing.assert_allclose(out["cobb_angles"], [[10, 20, 30], [20, 40, 60]], rtol=1e-6)  # by hand


def test_version_signature_and_output_filter(target):
    address, rest = target
    client = PredictClient(address, rest=rest, version=1, signature="predict_image")
    out = client.predict({"image": np.full((2, 16, 8, 1), 0.5).tolist()}, output_filter=["cobb_angles"])
    assert list(out) == ["cobb_angles"]
    np.testing.assert_allclose(out["cobb_angles"], [[5, 10, 15]] * 2, rtol=1e-6)
    client.close()


def test_metadata_and_status_agree_between_transports(server):
    srv, _ = server
    g = PredictClient(f"127.0.0.1:{srv.port}")
    r = PredictClient(f"127.0.0.1:{srv.rest_port}", rest=True)
    assert g.metadata() == r.metadata()
    sd = g.metadata()["metadata"]["signature_def"]["signature_def"]
    assert sd["serving_default"]["inputs"]["image_bytes"]["dtype"] == "DT_STRING"
    assert sd["predict_image"]["inputs"]["image"]["dtype"] == "DT_FLOAT"
    assert g.status() == r.status()
    assert [(s["version"], s["state"]) for s in g.status()["model_version_status"]] == \
        [("2", "AVAILABLE"), ("1", "AVAILABLE")]
    g.close()


def test_errors_raise_with_server_message(target):
    address, rest = target
    with pytest.raises(ServingClientError) as info:
        PredictClient(address, rest=rest).predict({"image_bytes": [b"not an image"]})
    assert info.value.code in ("INVALID_ARGUMENT", "400")
    with pytest.raises(ServingClientError) as info:
        PredictClient(address, rest=rest, version=42).status()
    assert info.value.code in ("NOT_FOUND", "404") and "42" in info.value.message
    with pytest.raises(ValueError, match="inputs"):
        PredictClient(address, rest=rest).predict({})


def _wait_port(port: int, proc: subprocess.Popen, seconds: float = 60) -> None:
    import socket

    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited early: {proc.communicate()[1][-3000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError("server did not open its port")


def _wait_available(client: PredictClient, proc: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited early: {proc.communicate()[1][-3000:]}")
        try:
            if any(s["state"] == "AVAILABLE" for s in client.status()["model_version_status"]):
                return
        except ServingClientError:
            pass
        time.sleep(0.2)
    raise AssertionError("no version became AVAILABLE")


def test_cli_serve_process_answers_and_stops_on_sigterm(tmp_path):
    base = str(tmp_path / "models")
    save_version(base, 5, gain=1.0)
    port, rest_port = free_port(), free_port()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.Popen(
        [sys.executable, "-m", "seg4reg_tf.cli", "serve", "--model-base-path", base, "--port", str(port),
         "--rest_api_port", str(rest_port), "--poll-seconds", "0.5", "--max-batch-size", "4"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_port(rest_port, proc)  # as TF Serving: the ports open once the model is AVAILABLE
        _wait_available(PredictClient(f"127.0.0.1:{port}"), proc)
        out = PredictClient(f"127.0.0.1:{port}").predict({"image_bytes": [GOOD]})
        np.testing.assert_allclose(out["cobb_angles"], [[5, 10, 15]], rtol=1e-6)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err[-3000:]
    assert "loaded model seg4reg version 5" in err
    assert "shutting down" in err and "server stopped" in err
