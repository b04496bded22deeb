"""Server-side batching: the BatchScheduler on its own, merged batches under concurrent gRPC clients,
and a server with batching off."""
from __future__ import annotations

import threading

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import prediction_service_pb2_grpc

from seg4reg_tf.serving.batching import BatchingConfig, BatchScheduler
from seg4reg_tf.serving.server import ModelServer, ServerConfig
from tests.serving.served import GOOD, OPTIONS, WHITE, check_good, outputs, request
from tests.serving.serving_testmodel import save_version


def test_batch_scheduler_merges_and_isolates_failures():
    calls = []

    def run(inputs):
        x = inputs["x"]
        calls.append(len(x))
        if np.any(x < 0):
            raise ValueError("negative input")
        return {"y": x * 2, "n": np.full(len(x), len(x))}

    sched = BatchScheduler(run, BatchingConfig(max_batch_size=6, batch_timeout_ms=200), name="t")
    results, lock = {}, threading.Lock()

    def submit(i, value):
        try:
            out = sched.submit({"x": np.array([value, value], np.float32)})
        except ValueError as err:
            out = err
        with lock:
            results[i] = out

    threads = [threading.Thread(target=submit, args=(i, -1.0 if i == 1 else float(i))) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sched.close()
    assert isinstance(results[1], ValueError)
    for i in (0, 2):
        np.testing.assert_array_equal(results[i]["y"], [2 * i, 2 * i])
    # first a merged run of 6 items failed, then each request ran alone (2 items each)
    assert calls[0] == 6 and sorted(calls[1:]) == [2, 2, 2]
    assert sched.requests == 3 and sched.merged_runs == 0


@pytest.mark.slow
def test_concurrent_clients_are_batched_without_errors(served):
    server = served["server"]
    lv = server.manager.versions()[2]
    before = {k: (b.runs, b.requests) for k, b in lv.batchers().items()}
    errors, sizes, lock = [], [], threading.Lock()

    def worker(i):
        for j in range(50):
            try:
                images = [GOOD] if (i + j) % 2 else [WHITE, GOOD]
                out = outputs(served["predict"].Predict(request(images), timeout=60))
                want = [[20, 40, 60], [10, 20, 30]] if len(images) == 2 else [[10, 20, 30]]
                np.testing.assert_allclose(out["cobb_angles"], want, rtol=1e-6)
                with lock:
                    sizes.extend(out["batch_size"].tolist())
            except Exception as err:  # noqa: BLE001
                with lock:
                    errors.append(repr(err))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    batcher = lv.batchers()["serving_default"]
    runs = batcher.runs - before.get("serving_default", (0, 0))[0]
    requests = batcher.requests - before.get("serving_default", (0, 0))[1]
    assert requests == 400
    assert runs < 400 and batcher.merged_runs > 0  # fewer model invocations than requests
    assert max(sizes) > 2 and max(sizes) <= 8  # the graph itself saw merged batches, capped


@pytest.mark.slow
def test_batching_disabled_runs_each_request(tmp_path):
    base = str(tmp_path / "m")
    save_version(base, 1, gain=1.0)
    config = ServerConfig(model_base_path=base, port=0, rest_port=-1, enable_batching=False)
    with ModelServer(config) as server:
        channel = grpc.insecure_channel(f"127.0.0.1:{server.port}", options=OPTIONS)
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        check_good(stub, gain=1.0)
        assert server.manager.versions()[1].batchers() == {}
        channel.close()
