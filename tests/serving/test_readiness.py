"""Issue 21: a version is AVAILABLE only after its warm-up, and the Kubernetes readiness probe of
serving/k8s/ (run here as written, against `seg4reg serve`) fails while the warm-up runs, passes after.

The warm-up is made slow by holding the predict it replays through until the test lets it go.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
import urllib.request

import pytest
import tensorflow as tf
import yaml
from tensorflow_serving.apis import prediction_log_pb2

from seg4reg_tf.export.layout import WARMUP_RELPATH
from seg4reg_tf.serving import core as core_mod
from seg4reg_tf.serving.server import ModelServer, ServerConfig
from tests.serving.serving_testmodel import half_image, png, save_version

pytestmark = pytest.mark.slow  # starts a server

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
K8S = os.path.join(REPO, "serving", "k8s", "seg4reg-serving.yaml")
GOOD = png(half_image())


def probe_command(rest_port: int) -> list[str]:
    """The readiness probe of the k8s Deployment, pointed at `rest_port` instead of 8501."""
    with open(K8S, encoding="utf-8") as f:
        deployment = next(d for d in yaml.safe_load_all(f) if d["kind"] == "Deployment")
    probe = deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    assert set(probe) >= {"exec", "periodSeconds"}, "the probe must be a check that can fail (exec), not httpGet"
    command = list(probe["exec"]["command"])
    assert "/dev/tcp/127.0.0.1/8501" in command[-1] and "AVAILABLE" in command[-1]
    command[-1] = command[-1].replace("/dev/tcp/127.0.0.1/8501", f"/dev/tcp/127.0.0.1/{rest_port}")
    return command


def run_probe(command: list[str]) -> int:
    return subprocess.run(command, capture_output=True, timeout=10).returncode


def write_warmup(version_dir: str) -> None:
    log = prediction_log_pb2.PredictionLog()
    request = log.predict_log.request
    request.model_spec.name = "seg4reg"
    request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto([GOOD], dtype=tf.string))
    path = os.path.join(version_dir, WARMUP_RELPATH)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        writer.write(log.SerializeToString())


def states(rest_port: int) -> dict[str, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{rest_port}/v1/models/seg4reg", timeout=10) as resp:
        assert resp.status == 200
        return {s["version"]: s["state"] for s in json.loads(resp.read())["model_version_status"]}


@pytest.fixture
def slow_warmup(monkeypatch):
    """Every predict waits for `release` (so a warm-up lasts until the test sets it)."""
    release, entered = threading.Event(), threading.Event()
    original = core_mod.PredictionCore.predict

    def held(self, *args, **kwargs):
        entered.set()
        assert release.wait(60), "the test never released the warm-up"
        return original(self, *args, **kwargs)

    monkeypatch.setattr(core_mod.PredictionCore, "predict", held)
    yield release, entered
    release.set()


def test_readiness_probe_fails_while_warming_up_and_passes_after(tmp_path, slow_warmup):
    release, entered = slow_warmup
    base = str(tmp_path / "models")
    write_warmup(save_version(base, 1, gain=1.0))
    tmp = str(tmp_path / "v2")
    save_version(tmp, 2, gain=2.0)
    write_warmup(os.path.join(tmp, "2"))
    config = ServerConfig(model_base_path=base, port=0, rest_port=0, poll_seconds=0.2)
    server = ModelServer(config).start(wait_for_models=False)  # ports first, then the slow load
    try:
        probe = probe_command(server.rest_port)
        assert entered.wait(30), "the warm-up did not start"
        assert states(server.rest_port) == {"1": "LOADING"}
        assert run_probe(probe) != 0, "the probe passed while the only version was warming up"
        time.sleep(0.5)
        assert run_probe(probe) != 0 and states(server.rest_port) == {"1": "LOADING"}
        release.set()
        deadline = time.monotonic() + 30
        while states(server.rest_port) != {"1": "AVAILABLE"} and time.monotonic() < deadline:
            time.sleep(0.1)
        assert states(server.rest_port) == {"1": "AVAILABLE"}
        assert run_probe(probe) == 0

        # a new version: LOADING while it warms up, the old one serves on (ready), then it replaces it
        release.clear()
        entered.clear()
        shutil.move(os.path.join(tmp, "2"), os.path.join(base, "2"))
        assert entered.wait(30), "the new version's warm-up did not start"
        assert states(server.rest_port) == {"2": "LOADING", "1": "AVAILABLE"}
        assert run_probe(probe) == 0
        release.set()
        deadline = time.monotonic() + 30
        while states(server.rest_port) != {"2": "AVAILABLE", "1": "END"} and time.monotonic() < deadline:
            time.sleep(0.1)
        assert states(server.rest_port) == {"2": "AVAILABLE", "1": "END"}  # newest only: 1 unloaded after 2
        assert run_probe(probe) == 0
    finally:
        release.set()
        server.stop(grace=1.0)


def test_probe_fails_when_nothing_listens_or_no_such_model(tmp_path):
    from tests.serving.serving_testmodel import free_port

    assert run_probe(probe_command(free_port())) != 0  # nothing listening
    base = str(tmp_path / "models")
    save_version(base, 1, gain=1.0)
    config = ServerConfig(model_base_path=base, model_name="other", port=0, rest_port=0)
    with ModelServer(config) as server:
        assert run_probe(probe_command(server.rest_port)) != 0  # 404: the probe's model is not served
