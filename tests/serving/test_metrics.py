"""Issue 21: Prometheus metrics at the monitoring config's path on the REST port.

The page is parsed strictly as the text exposition format (0.0.4); a known number of requests of
each kind gives exactly those counts.
"""
from __future__ import annotations

import base64
import json
import math
import re
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import prediction_service_pb2_grpc

from seg4reg_tf.serving.model_config import ServedModel, VersionPolicy
from seg4reg_tf.serving.prometheus import Counter, Histogram, Registry
from seg4reg_tf.serving.server import ModelServer, ServerConfig
from tests.serving.served import GOOD, OPTIONS, WHITE, request
from tests.serving.serving_testmodel import save_version

PATH = "/monitoring/prometheus/metrics"
_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(rf'^({_NAME})(?:\{{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*)\}})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(page: str) -> tuple[dict[str, str], dict[tuple[str, frozenset], float]]:
    """({metric family: type}, {(sample name, labels): value}); AssertionError on any malformed line."""
    assert page.endswith("\n")
    types, samples = {}, {}
    for line in page.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert re.fullmatch(_NAME, name) and kind in ("counter", "gauge", "histogram", "untyped"), line
            assert name not in types, f"family {name} declared twice"
            types[name] = kind
            continue
        m = _SAMPLE.match(line)
        assert m, f"malformed sample line: {line!r}"
        name, labels, value = m.groups()
        family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in types else name
        assert family in types, f"sample {name} before its # TYPE line"
        pairs = frozenset((k, v.replace('\\"', '"').replace("\\\\", "\\")) for k, v in _LABEL.findall(labels or ""))
        key = (name, pairs)
        assert key not in samples, f"duplicate sample {line}"
        samples[key] = float(value)
    return types, samples


def value(samples, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def scrape(port: int) -> tuple[dict, dict]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{PATH}", timeout=10) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return parse(resp.read().decode("utf-8"))


def check_histograms(types, samples) -> None:
    """Every histogram series: cumulative buckets, +Inf == _count."""
    for family in [n for n, k in types.items() if k == "histogram"]:
        series = {}
        for (name, labels), v in samples.items():
            if name == f"{family}_bucket":
                rest = frozenset(p for p in labels if p[0] != "le")
                le = dict(labels)["le"]
                series.setdefault(rest, []).append((math.inf if le == "+Inf" else float(le), v))
        for rest, buckets in series.items():
            counts = [c for _, c in sorted(buckets)]
            assert counts == sorted(counts), f"{family}{dict(rest)}: buckets not cumulative"
            assert sorted(buckets)[-1][0] == math.inf
            assert counts[-1] == samples[(f"{family}_count", rest)]


def post(port: int, path: str, body: dict) -> int:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(), method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code


def test_registry_renders_the_text_format():
    reg = Registry()
    c = reg.register(Counter(":a:b_total", "help", ["x"]))
    h = reg.register(Histogram("lat", "latency", [1, 10], ["y"]))
    c.inc('q"u\\o\nte')
    c.inc('q"u\\o\nte', amount=2)
    for v in (0.5, 1, 5, 50):
        h.observe(v, "k")
    page = reg.render()
    assert ':a:b_total{x="q\\"u\\\\o\\nte"} 3' in page
    types, samples = parse(page)
    assert types == {":a:b_total": "counter", "lat": "histogram"}
    assert value(samples, "lat_bucket", y="k", le="1") == 2 and value(samples, "lat_bucket", y="k", le="10") == 3
    assert value(samples, "lat_bucket", y="k", le="+Inf") == 4 and value(samples, "lat_sum", y="k") == 56.5
    with pytest.raises(ValueError, match="expected labels"):
        c.inc()
    with pytest.raises(ValueError, match="cannot decrease"):
        c.inc("x", amount=-1)


@pytest.mark.slow
def test_request_counts_latencies_batches_and_versions(tmp_path):
    base_a, base_b = str(tmp_path / "a"), str(tmp_path / "b")
    save_version(base_a, 1, gain=1.0)
    save_version(base_a, 2, gain=2.0)
    save_version(base_b, 7, gain=7.0)
    models = (ServedModel("a", base_a, VersionPolicy.every()), ServedModel("b", base_b))
    config = ServerConfig(models=models, port=0, rest_port=0, prometheus_path=PATH, max_batch_size=4,
                          batch_timeout_ms=1, enable_warmup=False)
    with ModelServer(config) as server:
        types, samples = scrape(server.rest_port)  # before any request: versions, no requests
        assert value(samples, "seg4reg_serving_loaded_versions", model_name="a") == 2
        assert value(samples, "seg4reg_serving_loaded_versions", model_name="b") == 1
        assert value(samples, "seg4reg_serving_model_version_state", model_name="b", version="7",
                     state="AVAILABLE") == 1
        assert not any(name.startswith(":tensorflow:serving:request_count") for name, _ in samples)

        channel = grpc.insecure_channel(f"127.0.0.1:{server.port}", options=OPTIONS)
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for _ in range(5):
            stub.Predict(request([GOOD, WHITE], name="a"), timeout=30)  # 5 OK, version 2, 2 items each
        for _ in range(2):
            stub.Predict(request([GOOD], name="a", version=1), timeout=30)  # 2 OK, version 1
        for bad in ([b"junk"], None):  # 2 INVALID_ARGUMENT (undecodable image; no inputs)
            with pytest.raises(grpc.RpcError):
                stub.Predict(request(bad, name="a"), timeout=30)
        with pytest.raises(grpc.RpcError):
            stub.Predict(request([GOOD], name="no_such_model"), timeout=30)  # NOT_FOUND, model_name ""
        channel.close()
        instances = {"instances": [{"b64": base64.b64encode(GOOD).decode()}]}
        for _ in range(3):
            assert post(server.rest_port, "/v1/models/b:predict", instances) == 200  # 3 OK over REST
        assert post(server.rest_port, "/v1/models/b:predict", {"instances": []}) == 400
        assert post(server.rest_port, "/v1/models/b:classify", {"examples": [{}]}) == 400
        assert post(server.rest_port, "/v1/models/b/versions/3:predict", instances) == 404
        for _ in range(4):  # status and metadata are not inference requests
            urllib.request.urlopen(f"http://127.0.0.1:{server.rest_port}/v1/models/b/metadata", timeout=10).read()

        types, samples = scrape(server.rest_port)
    check_histograms(types, samples)
    rc = ":tensorflow:serving:request_count"
    assert types[rc] == "counter"
    assert value(samples, rc, model_name="a", status="OK") == 7
    assert value(samples, rc, model_name="a", status="INVALID_ARGUMENT") == 2
    assert value(samples, rc, model_name="", status="NOT_FOUND") == 1
    assert value(samples, rc, model_name="b", status="OK") == 3
    assert value(samples, rc, model_name="b", status="INVALID_ARGUMENT") == 2
    assert value(samples, rc, model_name="b", status="NOT_FOUND") == 1
    assert sum(v for (name, _), v in samples.items() if name == rc) == 16

    lat = ":tensorflow:serving:request_latency"
    assert types[lat] == "histogram"
    assert value(samples, f"{lat}_count", model_name="a", API="Predict", entrypoint="GRPC") == 9
    assert value(samples, f"{lat}_count", model_name="b", API="Predict", entrypoint="REST") == 5
    assert value(samples, f"{lat}_count", model_name="b", API="Classify", entrypoint="REST") == 1
    assert 0 < value(samples, f"{lat}_sum", model_name="a", API="Predict", entrypoint="GRPC") < 9 * 30e6  # us

    detail = "seg4reg_serving_requests_total"
    common = {"API": "Predict", "signature_name": "serving_default"}
    assert value(samples, detail, model_name="a", version="2", entrypoint="GRPC", status="OK", **common) == 5
    assert value(samples, detail, model_name="a", version="1", entrypoint="GRPC", status="OK", **common) == 2
    assert value(samples, detail, model_name="b", version="7", entrypoint="REST", status="OK", **common) == 3
    assert value(samples, detail, model_name="b", version="", signature_name="", API="Predict", entrypoint="REST",
                 status="NOT_FOUND") == 1

    # batches: every request that reached a batcher is one input; their items all ran (no padding here)
    inputs = ":tensorflow:serving:batching_session:input_batch_size"
    processed = ":tensorflow:serving:batching_session:processed_batch_size"
    assert value(samples, f"{inputs}_count") >= 5 + 2 + 3
    assert value(samples, f"{inputs}_sum") == value(samples, f"{processed}_sum")
    assert value(samples, "seg4reg_serving_batch_size_sum", model_name="a", version="2",
                 signature_name="serving_default") >= 5 * 2
    assert value(samples, "seg4reg_serving_batch_size_sum", model_name="b", version="7",
                 signature_name="serving_default") == 3


@pytest.mark.slow
def test_no_metrics_page_without_a_monitoring_config(tmp_path):
    base = str(tmp_path / "m")
    save_version(base, 1, gain=1.0)
    with ModelServer(ServerConfig(model_base_path=base, port=0, rest_port=0)) as server:
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"http://127.0.0.1:{server.rest_port}{PATH}", timeout=10)
        assert err.value.code == 404


@pytest.mark.slow
def test_padding_to_allowed_batch_sizes_is_counted_and_dropped(tmp_path):
    base = str(tmp_path / "m")
    save_version(base, 1, gain=1.0)
    config = ServerConfig(model_base_path=base, port=0, rest_port=0, prometheus_path=PATH, max_batch_size=4,
                          allowed_batch_sizes=(2, 4), enable_warmup=False)
    with ModelServer(config) as server:
        channel = grpc.insecure_channel(f"127.0.0.1:{server.port}", options=OPTIONS)
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response = stub.Predict(request([GOOD, WHITE, GOOD], name="seg4reg"), timeout=30)  # 3 items -> padded to 4
        channel.close()
        from tests.serving.served import outputs

        out = outputs(response)
        assert out["cobb_angles"].shape == (3, 3) and out["batch_size"].tolist() == [4, 4, 4]
        np.testing.assert_allclose(out["cobb_angles"], [[5, 10, 15], [10, 20, 30], [5, 10, 15]], rtol=1e-6)
        _, samples = scrape(server.rest_port)
    assert value(samples, ":tensorflow:serving:batching_session:input_batch_size_sum") == 3
    assert value(samples, ":tensorflow:serving:batching_session:processed_batch_size_sum") == 4
