"""What the server tests share: request builders and a server with two versions of the tiny model."""
from __future__ import annotations

import contextlib
import os

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import model_service_pb2_grpc, predict_pb2, prediction_service_pb2_grpc

from seg4reg_tf.serving.model_config import VersionPolicy
from seg4reg_tf.serving.server import ModelServer, ServerConfig
from tests.serving.serving_testmodel import half_image, png, save_version

OPTIONS = [("grpc.max_send_message_length", 256 << 20), ("grpc.max_receive_message_length", 256 << 20)]
GOOD = png(half_image())
WHITE = png(np.full((40, 20), 255, np.uint8))


@contextlib.contextmanager
def two_versions(base: str):
    """A server (gRPC + REST) on BASE with versions 1 (gain 1) and 2 (gain 2), label stable=1 and an
    incomplete version dir 7, every version served (policy `all`); yields the dict the `served` fixture
    gives its tests."""
    save_version(base, 1, gain=1.0)
    save_version(base, 2, gain=2.0)
    os.makedirs(os.path.join(base, "7"))  # incomplete: no saved_model.pb -> ignored
    config = ServerConfig(model_base_path=base, port=0, rest_port=0, poll_seconds=0.2,
                          max_batch_size=8, batch_timeout_ms=20, version_labels={"stable": 1},
                          version_policy=VersionPolicy.every())
    with ModelServer(config) as server:
        channel = grpc.insecure_channel(f"127.0.0.1:{server.port}", options=OPTIONS)
        yield {"server": server, "base": base,
               "predict": prediction_service_pb2_grpc.PredictionServiceStub(channel),
               "model": model_service_pb2_grpc.ModelServiceStub(channel),
               "rest": f"http://127.0.0.1:{server.rest_port}/v1/models/seg4reg"}
        channel.close()


def request(images=(GOOD,), version=None, signature="", label=None, name="seg4reg", output_filter=()):
    req = predict_pb2.PredictRequest()
    req.model_spec.name = name
    if version is not None:
        req.model_spec.version.value = version
    if label is not None:
        req.model_spec.version_label = label
    req.model_spec.signature_name = signature
    if images is not None:
        req.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto(list(images), dtype=tf.string))
    req.output_filter.extend(output_filter)
    return req


def outputs(response):
    return {k: tf.make_ndarray(v) for k, v in response.outputs.items()}


def check_good(stub, gain=2.0):
    out = outputs(stub.Predict(request([GOOD]), timeout=30))
    np.testing.assert_allclose(out["cobb_angles"], [[5 * gain, 10 * gain, 15 * gain]], rtol=1e-6)

