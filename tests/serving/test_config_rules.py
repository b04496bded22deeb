"""One owner per rule: each setting of `seg4reg serve` has one default and one check, and every path to it
(the Python `ServerConfig`, the flags, TF Serving's config files) gives the same default and refuses a bad
value with the same words (no server is started here)."""
from __future__ import annotations

import argparse
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2

from seg4reg_tf.serving.batching import BatchingConfig
from seg4reg_tf.serving.cli import register
from seg4reg_tf.serving.config import ServerConfig
from seg4reg_tf.serving.core import PredictionCore
from seg4reg_tf.serving.model_config import ModelConfigError, ModelOptions, ServedModel, VersionPolicy
from seg4reg_tf.serving.request_limits import RequestLimits
from seg4reg_tf.serving.serve_flags import config_from_args
from seg4reg_tf.serving.signatures import SignatureInfo


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    return parser


def serve_config(*argv: str) -> ServerConfig:
    return config_from_args(_parser().parse_args(["serve", *argv]))


def _error(make) -> str:
    with pytest.raises(ValueError) as err:
        make()
    return str(err.value)


# -- ints are ints, not bools, everywhere ------------------------------------------------------------
@pytest.mark.parametrize("make,field", [
    (lambda v: ServerConfig(model_base_path="/m", port=v), "port"),
    (lambda v: ServerConfig(model_base_path="/m", grpc_max_workers=v), "grpc_max_workers"),
    (lambda v: ServerConfig(model_base_path="/m", max_images_per_request=v), "max_images"),
    (lambda v: ServerConfig(model_base_path="/m", version_labels={"stable": v}), "version_labels"),
    (lambda v: BatchingConfig(max_batch_size=v), "batching.max_batch_size"),
    (lambda v: BatchingConfig(max_enqueued=v), "batching.max_enqueued"),
    (lambda v: RequestLimits(max_chunk_pixels=v), "max_chunk_pixels"),
    (lambda v: VersionPolicy.latest(v), "num_versions"),
    (lambda v: VersionPolicy.specific([v]), "specific.versions"),
    (lambda v: ServedModel("a", "/a", labels={"stable": v}), "version_labels"),
])
def test_a_bool_is_not_an_int_anywhere(make, field):
    make(1)  # an int is fine
    with pytest.raises((ValueError, ModelConfigError), match=field):
        make(True)


@pytest.mark.parametrize("make,field", [
    (lambda v: ServerConfig(model_base_path="/m", poll_seconds=v), "poll_seconds"),
    (lambda v: ServerConfig(model_base_path="/m", rest_body_timeout_s=v), "rest_body_timeout_s"),
    (lambda v: BatchingConfig(batch_timeout_ms=v), "batching.batch_timeout_ms"),
])
def test_a_bool_is_not_a_number_of_seconds_either(make, field):
    make(1.5)
    with pytest.raises(ValueError, match=field):
        make(True)


# -- request limits: RequestLimits owns the defaults and the check -----------------------------------
def test_request_limits_default_the_same_through_every_path():
    assert ServerConfig(model_base_path="/m").limits == RequestLimits()
    assert serve_config("--model_base_path=/m").limits == RequestLimits()
    cfg = serve_config("--model_base_path=/m", "--max-images-per-request=3", "--max-request-pixels=1000")
    assert cfg.limits == RequestLimits(max_images=3, max_request_pixels=1000)


def test_the_serve_help_states_the_request_limits_defaults():
    help_text = " ".join(_parser()._subparsers._group_actions[0].choices["serve"].format_help().split())
    assert f"(default {RequestLimits().max_images})" in help_text
    assert f"{RequestLimits().max_request_pixels:,}" in help_text


@pytest.mark.parametrize("field,flag,key", [
    ("max_images", "--max-images-per-request", "max_images_per_request"),
    ("max_request_pixels", "--max-request-pixels", "max_request_pixels"),
])
@pytest.mark.parametrize("bad", [0, -5])
def test_a_bad_request_limit_is_refused_alike_through_every_path(field, flag, key, bad):
    expected = _error(lambda: RequestLimits(**{field: bad}))
    assert _error(lambda: ServerConfig(model_base_path="/m", **{key: bad})) == expected
    assert _error(lambda: serve_config("--model_base_path=/m", f"{flag}={bad}")) == expected


# -- batching: BatchingConfig owns max_batch_size and batch_timeout_ms ------------------------------
class FakeVersion:
    """A loaded version with one batchable signature `image` float32 [B, 2, 2, 1] -> `y` float32 [B]
    (`outputs(x)` computes it); records the size of every run."""

    name, version, options = "fake", 1, ModelOptions()

    def __init__(self, outputs=None) -> None:
        self.info = SignatureInfo("serving_default", meta_graph_pb2.SignatureDef(), {"image": tf.float32},
                                  {"image": (None, 2, 2, 1)}, {"y": tf.float32})
        self.outputs = outputs or (lambda x: {"y": x.reshape(len(x), -1)[:, 0]})
        self.runs: list[int] = []

    def signature(self, name: str) -> SignatureInfo:
        return self.info

    def run(self, signature: str, inputs, cancelled=None):
        self.runs.append(len(inputs["image"]))
        return self.outputs(inputs["image"])


def test_batching_defaults_the_same_through_every_path():
    batching = BatchingConfig()
    for cfg in (ServerConfig(model_base_path="/m"), serve_config("--model_base_path=/m")):
        assert (cfg.batching.max_batch_size, cfg.batching.batch_timeout_ms) == (batching.max_batch_size,
                                                                               batching.batch_timeout_ms)


def test_a_large_request_runs_in_chunks_of_the_batchers_default_size():
    n = BatchingConfig().max_batch_size
    lv = FakeVersion()
    PredictionCore().predict(lv, "", {"image": np.zeros((2 * n + 1, 2, 2, 1), np.float32)})
    assert lv.runs == [n, n, 1]


def test_the_serve_help_states_the_batching_defaults():
    help_text = " ".join(_parser()._subparsers._group_actions[0].choices["serve"].format_help().split())
    assert f"largest merged batch (default {BatchingConfig().max_batch_size})" in help_text
    assert f"batch fill wait, ms (default {BatchingConfig().batch_timeout_ms:g})" in help_text


def test_the_serve_flags_read_the_defaults_without_numpy_or_tensorflow():
    """serve_flags imports the defaults' owners at `seg4reg --help` time: they must stay light."""
    code = ("import sys, seg4reg_tf.serving.serve_flags; "
            "print(sorted(m for m in ('numpy', 'tensorflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout + out.stderr


# -- allowed_batch_sizes: one rule for ServerConfig and the batching parameters file ---------------------
def _batching_file(tmp_path, sizes, max_batch_size=None) -> str:
    path = tmp_path / "batching.txt"
    text = "" if max_batch_size is None else f"max_batch_size {{ value: {max_batch_size} }}\n"
    path.write_text(text + "".join(f"allowed_batch_sizes: {s}\n" for s in sizes))
    return str(path)


@pytest.mark.parametrize("sizes,why", [
    ((4, 2, 8), "expected increasing sizes >= 1, got [4, 2, 8]"),
    ((2, 2, 8), "expected increasing sizes >= 1, got [2, 2, 8]"),
    ((0, 8), "expected increasing sizes >= 1, got [0, 8]"),
    ((-2, 8), "expected increasing sizes >= 1, got [-2, 8]"),
    ((1, 4), "the last entry (4) must equal max_batch_size (8), as TF Serving requires"),
    ((1, 16), "the last entry (16) must equal max_batch_size (8), as TF Serving requires"),
])
def test_bad_allowed_batch_sizes_are_refused_alike_through_both_paths(tmp_path, sizes, why):
    in_config = _error(lambda: ServerConfig(model_base_path="/m", max_batch_size=8, allowed_batch_sizes=sizes))
    assert in_config == f"batching.allowed_batch_sizes: {why}"
    path = _batching_file(tmp_path, sizes, max_batch_size=8)
    assert _error(lambda: serve_config("--model_base_path=/m", f"--batching_parameters_file={path}")) \
        == f"{path}: allowed_batch_sizes: {why}"


def test_allowed_batch_sizes_end_at_the_max_batch_size_the_server_uses(tmp_path):
    """Without max_batch_size in the file the server uses the default, and the file is checked against it
    (as TF Serving checks against its scheduler's default), as ServerConfig does."""
    default = BatchingConfig().max_batch_size
    sizes = (1, default)
    cfg = serve_config("--model_base_path=/m", f"--batching_parameters_file={_batching_file(tmp_path, sizes)}")
    assert cfg.batching.allowed_batch_sizes == sizes == ServerConfig(model_base_path="/m",
                                                                     allowed_batch_sizes=sizes).allowed_batch_sizes
    short = (1, default // 2)
    why = f"the last entry ({default // 2}) must equal max_batch_size ({default}), as TF Serving requires"
    assert _error(lambda: ServerConfig(model_base_path="/m", allowed_batch_sizes=short)).endswith(why)
    path = _batching_file(tmp_path, short)
    assert _error(lambda: serve_config("--model_base_path=/m", f"--batching_parameters_file={path}")).endswith(why)


# -- the Prometheus path: one rule for ServerConfig and the monitoring config file -------------------
def _monitoring_file(tmp_path, route) -> str:
    path = tmp_path / "monitoring.config"
    path.write_text(f"prometheus_config {{ enable: true path: {route!r} }}\n".replace("'", '"'))
    return str(path)


@pytest.mark.parametrize("route", ["metrics", "/v1/models/x", "/v1/", "/metrics?x=1", "/my metrics", "/m\tx"])
def test_a_bad_prometheus_path_is_refused_alike_through_both_paths(tmp_path, route):
    why = (f"expected an absolute URL path outside /v1/, without '?' or spaces (e.g. "
           f"'/monitoring/prometheus/metrics'), got {route!r}")
    assert _error(lambda: ServerConfig(model_base_path="/m", prometheus_path=route)) \
        == f"prometheus_path ('' = no metrics): {why}"
    path = _monitoring_file(tmp_path, route)
    assert _error(lambda: serve_config("--model_base_path=/m", f"--monitoring_config_file={path}")) \
        == f"{path}: prometheus_config.path: {why}"


@pytest.mark.parametrize("route", ["/metrics", "/monitoring/prometheus/metrics", "/v1metrics"])
def test_a_good_prometheus_path_is_taken_alike_through_both_paths(tmp_path, route):
    assert ServerConfig(model_base_path="/m", prometheus_path=route).prometheus_path == route
    path = _monitoring_file(tmp_path, route)
    assert serve_config("--model_base_path=/m", f"--monitoring_config_file={path}").prometheus_path == route
    assert ServerConfig(model_base_path="/m", prometheus_path="").prometheus_path == ""  # no metrics
