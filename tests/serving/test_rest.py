"""TF Serving's REST API of the local server, over raw HTTP (status, metadata, predict, errors)."""
from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request

import numpy as np
import pytest

from tests.serving.served import GOOD, WHITE

pytestmark = pytest.mark.slow  # starts a server


def http(url, body=None):
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def b64(data: bytes) -> dict:
    return {"b64": base64.b64encode(data).decode()}


def test_rest_status_and_metadata(served):
    status, body = http(served["rest"])
    assert status == 200
    assert {s["version"]: s["state"] for s in body["model_version_status"]} == {"1": "AVAILABLE",
                                                                                  "2": "AVAILABLE"}
    status, body = http(served["rest"] + "/versions/1")
    assert status == 200 and [s["version"] for s in body["model_version_status"]] == ["1"]
    status, body = http(served["rest"] + "/metadata")
    assert status == 200 and body["model_spec"]["version"] == "2"
    sd = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert sd["inputs"]["image_bytes"]["dtype"] == "DT_STRING"


def test_rest_row_and_columnar_with_b64(served):
    status, body = http(served["rest"] + ":predict", {"instances": [b64(GOOD), b64(WHITE)]})
    assert status == 200, body
    preds = body["predictions"]
    assert len(preds) == 2
    np.testing.assert_allclose(preds[0]["cobb_angles"], [10, 20, 30], rtol=1e-6)
    np.testing.assert_allclose(preds[1]["cobb_angles"], [20, 40, 60], rtol=1e-6)
    assert preds[0]["vertebra_labels"][5] == [3, 3, 3, 3, 0, 0, 0, 0]
    status, body = http(served["rest"] + ":predict",
                        {"instances": [{"image_bytes": b64(GOOD)}]})
    assert status == 200 and np.allclose(body["predictions"][0]["cobb_angles"], [10, 20, 30])
    status, body = http(served["rest"] + "/versions/1:predict",
                        {"signature_name": "serving_default", "inputs": {"image_bytes": [b64(GOOD)]}})
    assert status == 200, body
    np.testing.assert_allclose(body["outputs"]["cobb_angles"], [[5, 10, 15]], rtol=1e-6)
    status, body = http(served["rest"] + ":predict",
                        {"signature_name": "predict_image", "inputs": np.ones((1, 16, 8, 1)).tolist()})
    assert status == 200, body
    np.testing.assert_allclose(body["outputs"]["cobb_angles"], [[20, 40, 60]], rtol=1e-6)


@pytest.mark.parametrize("path,body,code,text", [
    (":predict", b"{not json", 400, "JSON"),
    (":predict", {"instances": [{"b64": "!!!"}]}, 400, "base64"),
    (":predict", {"instances": [b64(b"junk")]}, 400, ""),
    (":predict", {"instances": [b64(GOOD), b64(b"junk")]}, 400, "batch item 1"),
    (":predict", {"instances": []}, 400, "instances"),
    (":predict", {"nothing": 1}, 400, "instances"),
    (":predict", {"inputs": {"bogus": [1]}}, 400, "bogus"),
    (":predict", {"signature_name": "predict_image", "inputs": [[1, 2]]}, 400, "rank"),
    (":predict", {"signature_name": "predict_image", "inputs": [["a"]]}, 400, "float32"),
    (":predict", {"signature_name": "nope", "inputs": [b64(GOOD)]}, 404, "nope"),
    ("/versions/9:predict", {"instances": [b64(GOOD)]}, 404, "9"),
    ("/versions/x:predict", {"instances": [b64(GOOD)]}, 400, "version"),
    ("/metadataX", None, 404, ""),
    # TF Serving's answer to classify / regress on a predict signature (not 501)
    (":classify", {"examples": [{}]}, 400, "Expected classification signature method_name to be "
                                          "tensorflow/serving/classify. Was: tensorflow/serving/predict"),
    (":regress", {"examples": [{}]}, 400, "Expected regression signature method_name to be "
                                         "tensorflow/serving/regress. Was: tensorflow/serving/predict"),
    (":regress", {"signature_name": "nope", "examples": [{}]}, 404, "nope"),
])
def test_rest_errors(served, path, body, code, text):
    status, payload = http(served["rest"] + path, body)
    assert status == code, payload
    assert text in payload["error"]
    status, payload = http(served["rest"] + ":predict", {"instances": [b64(GOOD)]})
    assert status == 200


def test_rest_unknown_model_404(served):
    status, payload = http(served["rest"].replace("seg4reg", "other"))
    assert status == 404 and "other" in payload["error"]
