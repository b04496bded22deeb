"""TF Serving's start-up order (issue 42): the models of the initial config load and warm up first, the ports
open after, so a script that waits for the port and then sends is answered; a model that cannot load ends the
start with an error naming it."""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time

import grpc
import pytest
from tensorflow_serving.apis import prediction_service_pb2_grpc

from seg4reg_tf.serving.server import ModelLoadError, ModelServer, ServerConfig
from tests.serving.served import OPTIONS, outputs, request
from tests.serving.serving_testmodel import free_port, save_version
from tests.serving.test_readiness import slow_warmup, write_warmup  # noqa: F401 - a fixture

pytestmark = pytest.mark.slow  # starts servers

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _broken(base: str, version: int) -> None:
    os.makedirs(os.path.join(base, str(version)))
    with open(os.path.join(base, str(version), "saved_model.pb"), "wb") as f:
        f.write(b"not a SavedModel")


def test_ports_stay_closed_until_the_warm_up_is_done(tmp_path, slow_warmup):  # noqa: F811 - the fixture
    release, entered = slow_warmup
    base = str(tmp_path / "models")
    write_warmup(save_version(base, 1, gain=1.0))
    port, rest_port = free_port(), free_port()
    server = ModelServer(ServerConfig(model_base_path=base, port=port, rest_port=rest_port))
    started = threading.Thread(target=server.start, kwargs={"load_first": True})
    started.start()
    try:
        assert entered.wait(30), "the warm-up did not start"
        time.sleep(0.5)
        assert not _open(port) and not _open(rest_port), "a port opened before the model was AVAILABLE"
        release.set()
        started.join(60)
        assert not started.is_alive() and _open(port) and _open(rest_port)
        stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(f"127.0.0.1:{port}",
                                                                                       options=OPTIONS))
        assert outputs(stub.Predict(request(), timeout=30))["cobb_angles"].shape == (1, 3)
    finally:
        release.set()
        started.join(60)
        server.stop(grace=1.0)


def test_a_model_that_cannot_load_ends_the_start_naming_it(tmp_path):
    good, broken, empty = (str(tmp_path / n) for n in ("good", "broken", "empty"))
    save_version(good, 1, gain=1.0)
    _broken(broken, 3)
    os.makedirs(empty)
    for base, why in ((broken, "version 3 failed to load"), (empty, "no version directory")):
        port = free_port()
        server = ModelServer(ServerConfig(model_base_path=base, model_name="spine", port=port, rest_port=-1))
        pattern = re.escape(f"model 'spine' (base path {base}) has no version AVAILABLE: {why}")
        with pytest.raises(ModelLoadError, match=pattern):
            server.start(load_first=True)
        assert not _open(port)
    with ModelServer(ServerConfig(model_base_path=good, port=0, rest_port=-1)).start(load_first=True) as server:
        assert server.manager.versions()  # a loadable model starts


def test_seg4reg_serve_answers_the_first_request_after_its_port_opens(tmp_path):
    base = str(tmp_path / "models")
    write_warmup(save_version(base, 1, gain=1.0))
    port = free_port()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.Popen([sys.executable, "-m", "seg4reg_tf.cli", "serve", f"--model_base_path={base}",
                             "--model_name=seg4reg", f"--port={port}", "--rest_api_port=0"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not _open(port):  # what a TF Serving user's script does: wait for the port, then send
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "the port never opened"
            time.sleep(0.05)
        stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(f"127.0.0.1:{port}",
                                                                                       options=OPTIONS))
        assert outputs(stub.Predict(request(), timeout=30))["cobb_angles"].shape == (1, 3)  # not NOT_FOUND
    finally:
        proc.terminate()
        proc.communicate(timeout=60)

    _broken(str(tmp_path / "broken"), 2)
    done = subprocess.run([sys.executable, "-m", "seg4reg_tf.cli", "serve", f"--model_base_path={tmp_path / 'broken'}",
                           "--model_name=spine", f"--port={free_port()}", "--rest_api_port=0"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "model 'spine'" in done.stderr and "version 2 failed to load" in done.stderr
