"""Per-model `ModelOptions`: which outputs may be NaN and which string inputs are tf.Examples (and under which
feature their image is) are options of a served model, not names the generic server knows; `seg4reg serve`
supplies the seg4reg model's as the default (`config.SEG4REG_MODEL_OPTIONS`)."""
from __future__ import annotations

import ast
import base64
import json
import pathlib
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

import seg4reg_tf.serving
from seg4reg_tf.export.layout import EXAMPLE_IMAGE_KEY, EXAMPLES_INPUT, MAY_BE_NAN
from seg4reg_tf.serving.config import SEG4REG_MODEL_OPTIONS, ServerConfig
from seg4reg_tf.serving.core import PredictionCore
from seg4reg_tf.serving.errors import ServingError
from seg4reg_tf.serving.model_config import ModelConfigError, ModelOptions, ServedModel
from seg4reg_tf.serving.request_limits import RequestLimits
from seg4reg_tf.serving.rest_json import format_predict_response
from seg4reg_tf.serving.server import ModelServer
from seg4reg_tf.serving.signatures import SignatureInfo
from tests.serving.serving_testmodel import half_image, png, save_version


class FakeVersion:
    """A loaded version with one batchable signature; `run` answers `answer(inputs)` and records its inputs."""

    name, version = "fake", 1

    def __init__(self, inputs: dict, outputs: dict, answer, options: ModelOptions | None = None) -> None:
        self.info = SignatureInfo("serving_default", meta_graph_pb2.SignatureDef(), inputs,
                                  {k: (None,) for k in inputs}, outputs)
        self.answer, self.options = answer, options or ModelOptions()
        self.ran: list[dict] = []

    def signature(self, name: str) -> SignatureInfo:
        return self.info

    def run(self, signature: str, inputs, cancelled=None):
        self.ran.append(inputs)
        return self.answer(inputs)


def _nan_model(nan_in: str, options: ModelOptions | None) -> FakeVersion:
    """x float32 [B] -> `interval` and `angle` float32 [B], NaN in output `nan_in`."""
    def answer(inputs):
        x = inputs["x"].astype(np.float32)
        out = {"interval": x.copy(), "angle": x.copy()}
        out[nan_in][0] = np.nan
        return out
    return FakeVersion({"x": tf.float32}, {"interval": tf.float32, "angle": tf.float32}, answer, options)


def _predict(lv, inputs):
    return PredictionCore().predict(lv, "", inputs)


# -- nan_outputs --------------------------------------------------------------------------------------
@pytest.mark.parametrize("options,allowed", [
    (ModelOptions(nan_outputs={"interval"}), True),
    (ModelOptions(nan_outputs={"angle"}), False),
    (None, False),  # the generic default: no output may be NaN
    (SEG4REG_MODEL_OPTIONS, False),  # seg4reg's NaN outputs are other names
])
def test_nan_is_an_answer_only_in_the_configured_outputs(options, allowed):
    lv = _nan_model("interval", options)
    x = {"x": np.array([1.0, 2.0], np.float32)}
    if allowed:
        out = _predict(lv, x)
        assert np.isnan(out["interval"][0]) and out["interval"][1] == 2.0 and np.all(np.isfinite(out["angle"]))
    else:
        with pytest.raises(ServingError) as err:
            _predict(lv, x)
        assert err.value.code == grpc.StatusCode.INTERNAL and "non-finite value in output 'interval'" in str(err.value)


def test_the_seg4reg_defaults_allow_nan_in_the_interval_outputs_only():
    assert SEG4REG_MODEL_OPTIONS.nan_outputs == frozenset(MAY_BE_NAN) == {"cobb_angles_lower", "cobb_angles_upper"}
    assert dict(SEG4REG_MODEL_OPTIONS.example_image_keys) == {EXAMPLES_INPUT: EXAMPLE_IMAGE_KEY} \
        == {"examples": "image/encoded"}
    assert ServerConfig(model_base_path="/m").model_options == SEG4REG_MODEL_OPTIONS  # what `seg4reg serve` uses


@pytest.mark.parametrize("row_format", [True, False])
def test_rest_sends_nan_as_null_only_for_the_configured_outputs(row_format):
    outputs = {"interval": np.array([np.nan, 2.0], np.float32), "angle": np.array([1.0, 2.0], np.float32)}
    body = json.dumps(format_predict_response(outputs, row_format, frozenset({"interval"})), allow_nan=False)
    got = json.loads(body)
    interval = [r["interval"] for r in got["predictions"]] if row_format else got["outputs"]["interval"]
    assert interval == [None, 2.0]
    with pytest.raises(ValueError):  # not configured: NaN stays NaN, which strict JSON refuses (500 in REST)
        json.dumps(format_predict_response(outputs, row_format), allow_nan=False)


# -- example_image_keys ----------------------------------------------------------------------------------
def _example(key: str, image: bytes) -> bytes:
    return tf.train.Example(features=tf.train.Features(feature={
        key: tf.train.Feature(bytes_list=tf.train.BytesList(value=[image]))})).SerializeToString()


def _string_model(input_name: str, options: ModelOptions | None) -> FakeVersion:
    return FakeVersion({input_name: tf.string}, {"n": tf.int32},
                       lambda inputs: {"n": np.ones(len(inputs[input_name]), np.int32)}, options)


@pytest.mark.parametrize("input_name,key,options", [
    ("records", "img", ModelOptions(example_image_keys={"records": "img"})),
    (EXAMPLES_INPUT, EXAMPLE_IMAGE_KEY, SEG4REG_MODEL_OPTIONS),
])
def test_configured_example_inputs_are_parsed_before_the_model(input_name, key, options):
    lv = _string_model(input_name, options)
    garbage = np.array([b"\xff\xfe not an Example"], dtype=object)
    with pytest.raises(ServingError) as err:
        _predict(lv, {input_name: garbage})
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert f"input {input_name!r}: batch item 0 is not a serialized tf.Example" in str(err.value)
    wrong_key = np.array([_example("other", png(half_image()))], dtype=object)
    with pytest.raises(ServingError, match=f"no single bytes feature {key!r}"):
        _predict(lv, {input_name: wrong_key})
    big = np.array([_example(key, png(np.zeros((2000, 1000), np.uint8)))], dtype=object)  # 2 Mpx
    core = PredictionCore(RequestLimits(max_request_pixels=1_000_000))
    with pytest.raises(ServingError, match="decode to 2000000 pixels"):  # counted from the Example's image
        core.predict(lv, "", {input_name: big})
    assert lv.ran == []  # nothing reached the model
    good = np.array([_example(key, png(half_image()))], dtype=object)
    assert _predict(lv, {input_name: good})["n"].tolist() == [1]


@pytest.mark.parametrize("options", [None, ModelOptions(example_image_keys={"other": "img"}), SEG4REG_MODEL_OPTIONS])
def test_other_string_inputs_go_to_the_model_unparsed(options):
    lv = _string_model("records", options)
    data = np.array([b"opaque bytes the model itself judges"], dtype=object)
    assert _predict(lv, {"records": data})["n"].tolist() == [1]
    assert lv.ran[0]["records"][0] == data[0]


# -- the options themselves, and who knows seg4reg's names -------------------------------------------
@pytest.mark.parametrize("kw,field", [
    ({"nan_outputs": "interval"}, "nan_outputs"),  # a string is not a set of names
    ({"nan_outputs": {""}}, "nan_outputs"),
    ({"example_image_keys": {"examples": ""}}, "example_image_keys"),
    ({"example_image_keys": {"": "image/encoded"}}, "example_image_keys"),
])
def test_malformed_options_are_refused(kw, field):
    with pytest.raises(ModelConfigError, match=field):
        ModelOptions(**kw)


def test_options_must_be_model_options():
    with pytest.raises(ModelConfigError, match="options"):
        ServedModel("a", "/a", options={"nan_outputs": {"x"}})
    with pytest.raises(ValueError, match="model_options"):
        ServerConfig(model_base_path="/m", model_options={"nan_outputs": {"x"}})


def test_a_model_s_own_options_win_over_the_server_s():
    own = ModelOptions(nan_outputs={"x"})
    cfg = ServerConfig(models=(ServedModel("a", "/a", options=own), ServedModel("b", "/b")))
    assert [cfg.options_of(m) for m in cfg.served_models] == [own, SEG4REG_MODEL_OPTIONS]
    generic = ModelOptions()
    cfg = ServerConfig(models=(ServedModel("b", "/b"),), model_options=generic)
    assert cfg.options_of(cfg.served_models[0]) == generic


def test_only_the_seg4reg_configuration_names_the_seg4reg_outputs_and_example_key():
    """The generic modules take the names from a model's options; `config.py` supplies seg4reg's."""
    package = pathlib.Path(seg4reg_tf.serving.__file__).parent
    seg4reg_names = {"MAY_BE_NAN", "EXAMPLE_IMAGE_KEY", "EXAMPLES_INPUT"}
    literals = {"image/encoded", "examples", *MAY_BE_NAN}
    users = set()
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and {a.name for a in node.names} & seg4reg_names:
                users.add(path.name)
            if isinstance(node, ast.Constant) and node.value in literals:
                users.add(path.name)
    assert users == {"config.py"}


# -- through the server: per model ------------------------------------------------------------------------
@pytest.mark.slow
def test_served_models_answer_nan_as_their_options_say(tmp_path):
    """Two models on the same files (a model answering NaN in `cobb_angles`): the one whose options allow it
    answers NaN over gRPC and null in REST; the other (the server's default options) is INTERNAL / 500."""
    base = str(tmp_path / "m")
    save_version(base, 1, gain=float("nan"))
    models = (ServedModel("lenient", base, options=ModelOptions(nan_outputs={"cobb_angles"})),
              ServedModel("strict", base))
    config = ServerConfig(models=models, port=0, rest_port=0, enable_warmup=False)
    image = png(half_image())
    with ModelServer(config) as server:
        channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        req = predict_pb2.PredictRequest()
        req.model_spec.name = "lenient"
        req.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto([image], dtype=tf.string))
        out = tf.make_ndarray(stub.Predict(req, timeout=30).outputs["cobb_angles"])
        assert out.shape == (1, 3) and np.all(np.isnan(out))
        req.model_spec.name = "strict"
        with pytest.raises(grpc.RpcError) as err:
            stub.Predict(req, timeout=30)
        assert err.value.code() == grpc.StatusCode.INTERNAL and "non-finite" in err.value.details()
        channel.close()
        body = json.dumps({"instances": [{"b64": base64.b64encode(image).decode()}]}).encode()
        rest = f"http://127.0.0.1:{server.rest_port}/v1/models"
        answer = json.loads(urllib.request.urlopen(urllib.request.Request(f"{rest}/lenient:predict", body),
                                                   timeout=30).read())
        assert answer["predictions"][0]["cobb_angles"] == [None, None, None]
        with pytest.raises(urllib.error.HTTPError) as http_err:
            urllib.request.urlopen(urllib.request.Request(f"{rest}/strict:predict", body), timeout=30)
        assert http_err.value.code == 500
