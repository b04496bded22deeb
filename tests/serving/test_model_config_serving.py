"""Issue 21: several models from a TF Serving model config file, their version policies and labels,
TF Serving's default policy (the newest version only) and its availability-preserving unloading.

The models are the tiny SavedModels of serving_testmodel: `cobb_angles` = gain * [5, 10, 15] for the
half-white image, and each version has its own gain, so an answer tells which version gave it.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import prediction_service_pb2_grpc

from seg4reg_tf.serving.config import ServerConfig
from seg4reg_tf.serving.manager import ModelManager
from seg4reg_tf.serving.model_config import read_model_config_file
from seg4reg_tf.serving.server import ModelServer
from tests.serving.served import GOOD, OPTIONS, outputs, request
from tests.serving.serving_testmodel import free_port, save_version

pytestmark = pytest.mark.slow  # starts servers

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TWO_MODELS = """
model_config_list {
  config {
    name: "spine"
    base_path: "%(spine)s"
    model_platform: "tensorflow"
    model_version_policy { specific { versions: 1 versions: 2 } }
    version_labels { key: "stable" value: 1 }
    version_labels { key: "canary" value: 2 }
  }
  config {
    name: "other"
    base_path: "%(other)s"
    model_platform: "tensorflow"
  }
}
"""


def http(url: str, body: dict | None = None) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def b64_instances() -> dict:
    import base64

    return {"instances": [{"b64": base64.b64encode(GOOD).decode()}]}


def gain_of(angles) -> float:
    return float(np.asarray(angles).reshape(-1)[0]) / 5.0


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    spine, other = str(root / "spine"), str(root / "other")
    for v in (1, 2, 3):
        save_version(spine, v, gain=float(v))  # version 3 is not in the specific policy
        save_version(other, v, gain=10.0 * v)
    path = root / "models.config"
    path.write_text(TWO_MODELS % {"spine": spine, "other": other})
    config = ServerConfig(models=tuple(read_model_config_file(str(path))), port=0, rest_port=0, poll_seconds=30)
    with ModelServer(config) as server:
        channel = grpc.insecure_channel(f"127.0.0.1:{server.port}", options=OPTIONS)
        yield {"server": server, "stub": prediction_service_pb2_grpc.PredictionServiceStub(channel),
               "rest": f"http://127.0.0.1:{server.rest_port}/v1/models"}
        channel.close()


@pytest.mark.parametrize("name,version,label,gain", [
    ("spine", None, None, 2.0),  # the newest served version of the specific policy (3 is not served)
    ("spine", 1, None, 1.0),
    ("spine", None, "stable", 1.0),
    ("spine", None, "canary", 2.0),
    ("other", None, None, 30.0),  # default policy: the newest only
])
def test_models_answer_by_name_version_and_label_over_grpc_and_rest(two_models, name, version, label, gain):
    response = two_models["stub"].Predict(request([GOOD], name=name, version=version, label=label), timeout=30)
    assert gain_of(outputs(response)["cobb_angles"]) == pytest.approx(gain)
    assert response.model_spec.name == name
    path = f"/{name}" + (f"/versions/{version}" if version else "") + (f"/labels/{label}" if label else "")
    status, body = http(two_models["rest"] + path + ":predict", b64_instances())
    assert status == 200, body
    assert gain_of(body["predictions"][0]["cobb_angles"]) == pytest.approx(gain)


def test_status_lists_only_the_versions_each_policy_serves(two_models):
    status, body = http(two_models["rest"] + "/spine")
    assert status == 200 and {s["version"]: s["state"] for s in body["model_version_status"]} == \
        {"2": "AVAILABLE", "1": "AVAILABLE"}
    status, body = http(two_models["rest"] + "/other")
    assert status == 200 and {s["version"]: s["state"] for s in body["model_version_status"]} == {"3": "AVAILABLE"}
    status, body = http(two_models["rest"] + "/spine/labels/canary")
    assert status == 200 and [s["version"] for s in body["model_version_status"]] == ["2"]


@pytest.mark.parametrize("name,version,label,code,text", [
    ("spine", 3, None, grpc.StatusCode.NOT_FOUND, "AVAILABLE versions: [1, 2]"),  # on disk, not in the policy
    ("other", 1, None, grpc.StatusCode.NOT_FOUND, "AVAILABLE versions: [3]"),
    ("other", None, "stable", grpc.StatusCode.INVALID_ARGUMENT, "Unrecognized servable version label"),
    ("spine", None, "nope", grpc.StatusCode.INVALID_ARGUMENT, "known: ['canary', 'stable']"),
    ("seg4reg", None, None, grpc.StatusCode.NOT_FOUND, "serving ['other', 'spine']"),
])
def test_unserved_versions_labels_and_models_are_refused(two_models, name, version, label, code, text):
    with pytest.raises(grpc.RpcError) as err:
        two_models["stub"].Predict(request([GOOD], name=name, version=version, label=label), timeout=30)
    assert err.value.code() == code and text in err.value.details(), err.value.details()
    path = f"/{name}" + (f"/versions/{version}" if version else "") + (f"/labels/{label}" if label else "")
    status, body = http(two_models["rest"] + path + ":predict", b64_instances())
    assert status == (404 if code == grpc.StatusCode.NOT_FOUND else 400) and text in body["error"]


# -- version policies over time (the manager alone, scans driven by the test) --------------------
def _states(manager: ModelManager) -> dict[int, str]:
    return {v: s for v, (s, _) in manager.states("seg4reg").items()}


def test_default_policy_serves_the_newest_and_unloads_the_old_once_the_new_is_available(tmp_path):
    base = str(tmp_path / "m")
    save_version(base, 1, gain=1.0)
    save_version(base, 2, gain=2.0)
    manager = ModelManager(ServerConfig(model_base_path=base, enable_batching=False))
    try:
        manager.scan()
        assert sorted(manager.versions()) == [2] and _states(manager) == {2: "AVAILABLE"}  # 1 is never loaded
        save_version(base, 3, gain=3.0)
        manager.scan()
        assert sorted(manager.versions()) == [3] and _states(manager) == {3: "AVAILABLE", 2: "END"}
        # a broken newer version: the last good one keeps serving (availability preserved)
        os.makedirs(os.path.join(base, "4"))
        with open(os.path.join(base, "4", "saved_model.pb"), "wb") as f:
            f.write(b"not a SavedModel")
        manager.scan()
        assert sorted(manager.versions()) == [3]
        states = manager.states("seg4reg")
        assert states[4][0] == "END" and states[4][1] and states[3] == ("AVAILABLE", "")
        assert manager.resolve("seg4reg").version == 3
        # the broken one removed, and the served one too: the newest remaining is loaded
        shutil.rmtree(os.path.join(base, "4"))
        shutil.rmtree(os.path.join(base, "3"))
        manager.scan()
        assert sorted(manager.versions()) == [2] and manager.resolve("seg4reg").version == 2
    finally:
        manager.stop()


def test_latest_two_and_specific_policies_over_time(tmp_path):
    from seg4reg_tf.serving.model_config import VersionPolicy

    base = str(tmp_path / "m")
    for v in (1, 2, 3):
        save_version(base, v, gain=float(v))
    manager = ModelManager(ServerConfig(model_base_path=base, enable_batching=False,
                                        version_policy=VersionPolicy.latest(2)))
    try:
        manager.scan()
        assert sorted(manager.versions()) == [2, 3]
        save_version(base, 4, gain=4.0)
        manager.scan()
        assert sorted(manager.versions()) == [3, 4] and _states(manager)[2] == "END"
    finally:
        manager.stop()
    manager = ModelManager(ServerConfig(model_base_path=base, enable_batching=False,
                                        version_policy=VersionPolicy.specific([1, 3, 9])))
    try:
        manager.scan()
        assert sorted(manager.versions()) == [1, 3]  # 9 is not on disk (yet)
        save_version(base, 9, gain=9.0)
        manager.scan()
        assert sorted(manager.versions()) == [1, 3, 9]
    finally:
        manager.stop()


# -- `seg4reg serve` with TF Serving's flags and the shipped config files -------------------------
def test_cli_serves_two_models_with_the_shipped_tf_serving_files(tmp_path):
    """The issue's command: the shipped models.config (base paths rebased, a second model added),
    batching_parameters.txt and monitoring.config, unchanged, with TF Serving's flag spellings."""
    root = tmp_path / "models"
    save_version(str(root / "seg4reg"), 1, gain=1.0)
    save_version(str(root / "seg4reg"), 2, gain=2.0)
    save_version(str(root / "lumbar"), 5, gain=5.0)
    with open(os.path.join(REPO, "serving", "models.config"), encoding="utf-8") as f:
        shipped = f.read()
    assert 'base_path: "/models/seg4reg"' in shipped
    text = shipped.replace('base_path: "/models/seg4reg"', f'base_path: "{root / "seg4reg"}"').rstrip()
    assert text.endswith("}")
    lumbar = f'  config {{ name: "lumbar" base_path: "{root / "lumbar"}" model_platform: "tensorflow" }}\n'
    text = text[:-1] + lumbar + "}\n"
    config = tmp_path / "models.config"
    config.write_text(text)
    port, rest_port = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "seg4reg_tf.cli", "serve", f"--model_config_file={config}",
         f"--rest_api_port={rest_port}", f"--port={port}", "--enable_batching",
         f"--batching_parameters_file={os.path.join(REPO, 'serving', 'batching_parameters.txt')}",
         f"--monitoring_config_file={os.path.join(REPO, 'serving', 'monitoring.config')}",
         "--file_system_poll_wait_seconds", "1"],
        cwd=REPO, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        rest = f"http://127.0.0.1:{rest_port}/v1/models"
        deadline = time.monotonic() + 120
        ready = False
        while not ready and time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"serve exited: {proc.communicate()[1][-3000:]}")
            try:
                ready = all(any(s["state"] == "AVAILABLE" for s in http(f"{rest}/{name}")[1]["model_version_status"])
                            for name in ("seg4reg", "lumbar"))
            except (OSError, KeyError):
                pass
            time.sleep(0.3)
        assert ready, "the two models did not become AVAILABLE"
        for name, gain in (("seg4reg", 2.0), ("lumbar", 5.0)):  # latest { num_versions: 1 }: version 2
            status, body = http(f"{rest}/{name}:predict", b64_instances())
            assert status == 200 and gain_of(body["predictions"][0]["cobb_angles"]) == pytest.approx(gain)
        channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=OPTIONS)
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        assert gain_of(outputs(stub.Predict(request([GOOD], name="lumbar"), timeout=30))["cobb_angles"]) == 5.0
        channel.close()
        with urllib.request.urlopen(f"http://127.0.0.1:{rest_port}/monitoring/prometheus/metrics", timeout=10) as r:
            page = r.read().decode()
        assert ':tensorflow:serving:request_count{model_name="lumbar",status="OK"} 2' in page
        assert ':tensorflow:serving:request_count{model_name="seg4reg",status="OK"} 1' in page
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err[-3000:]
    assert "loaded model lumbar version 5" in err and "loaded model seg4reg version 2" in err
    assert "loaded model seg4reg version 1" not in err  # the newest only
