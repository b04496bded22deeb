"""Issue 21: `seg4reg serve` takes TF Serving's flags and config files (no server is started here).

The shipped serving/models.config, batching_parameters.txt and monitoring.config are read unchanged;
malformed files are refused naming the file and the field.
"""
from __future__ import annotations

import argparse
import os

import pytest

from seg4reg_tf.serving.cli import register
from seg4reg_tf.serving.config import ServerConfig
from seg4reg_tf.serving.config_files import ConfigFileError, read_batching_parameters, read_monitoring_config
from seg4reg_tf.serving.model_config import (
    ModelConfigError,
    ServedModel,
    VersionPolicy,
    parse_model_config,
    read_model_config_file,
)
from seg4reg_tf.serving.serve_flags import config_from_args

SERVING = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "serving")
MODELS_CONFIG = os.path.join(SERVING, "models.config")
BATCHING = os.path.join(SERVING, "batching_parameters.txt")
MONITORING = os.path.join(SERVING, "monitoring.config")


def serve_config(*argv: str) -> ServerConfig:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    return config_from_args(parser.parse_args(["serve", *argv]))


# -- the shipped TF Serving files ---------------------------------------------------------------
def test_shipped_files_configure_the_server():
    cfg = serve_config(f"--model_config_file={MODELS_CONFIG}", "--rest_api_port=8601", "--port=8600",
                       "--enable_batching", f"--batching_parameters_file={BATCHING}",
                       f"--monitoring_config_file={MONITORING}")
    assert cfg.served_models == (ServedModel("seg4reg", "/models/seg4reg", VersionPolicy.latest(1)),)
    assert (cfg.port, cfg.rest_port) == (8600, 8601)
    assert cfg.enable_batching and cfg.max_batch_size == 8 and cfg.batch_timeout_ms == 5.0
    assert cfg.allowed_batch_sizes == (1, 2, 4, 8) and cfg.batching.max_enqueued == 64 * 8
    assert cfg.prometheus_path == "/monitoring/prometheus/metrics"


def test_batching_and_monitoring_files_as_read():
    params = read_batching_parameters(BATCHING)
    assert (params.max_batch_size, params.batch_timeout_ms, params.max_enqueued_batches) == (8, 5.0, 64)
    monitoring = read_monitoring_config(MONITORING)
    assert monitoring.prometheus_enabled and monitoring.prometheus_path == "/monitoring/prometheus/metrics"


# -- flag spellings ----------------------------------------------------------------------------
@pytest.mark.parametrize("argv", [
    ["--model_base_path=/m", "--model_name=spine", "--port=9000", "--rest_api_port=9001",
     "--file_system_poll_wait_seconds=7", "--rest_api_timeout_in_ms=1234", "--enable_batching=false",
     "--enable_model_warmup=false", "--grpc_max_threads=5", "--rest_api_num_threads=6"],
    ["--model_base_path", "/m", "--model_name", "spine", "--port", "9000", "--rest_api_port", "9001",
     "--file_system_poll_wait_seconds", "7", "--rest_api_timeout_in_ms", "1234", "--enable_batching", "false",
     "--enable_model_warmup", "False", "--grpc_max_threads", "5", "--rest_api_num_threads", "6"],
    ["--model-base-path", "/m", "--model-name", "spine", "--port", "9000", "--rest-port", "9001",
     "--poll-seconds", "7", "--rest_api_timeout_in_ms=1234", "--no-batching", "--no-warmup",
     "--grpc_max_threads=5", "--rest_api_num_threads=6"],
], ids=["equals", "space", "dashed-aliases"])
def test_tf_serving_spellings_and_aliases_agree(argv):
    cfg = serve_config(*argv)
    assert cfg.served_models == (ServedModel("spine", "/m", VersionPolicy.latest(1)),)
    assert (cfg.port, cfg.rest_port, cfg.poll_seconds, cfg.rest_api_timeout_ms) == (9000, 9001, 7.0, 1234)
    assert cfg.enable_batching is False and cfg.enable_warmup is False
    assert (cfg.grpc_max_workers, cfg.rest_threads) == (5, 6)


@pytest.mark.parametrize("flags,batching", [
    ([], True), (["--enable_batching"], True), (["--enable_batching=true"], True), (["--enable_batching=1"], True),
    (["--enable_batching=false"], False), (["--enable_batching=0"], False), (["--no-batching"], False),
])
def test_boolean_flags(flags, batching):
    assert serve_config("--model_base_path=/m", *flags).enable_batching is batching


def test_rest_api_port_zero_means_no_rest_as_in_tf_serving(capsys):
    assert serve_config("--model_base_path=/m", "--rest_api_port=0").rest_port == -1
    assert serve_config("--model_base_path=/m").rest_port == 8501
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("port,rest_port", [("0", -1), ("-1", -1), ("9001", 9001)])
def test_the_dashed_rest_port_is_a_deprecated_alias_with_tf_serving_s_meaning(capsys, port, rest_port):
    """`--rest-port=0` once meant "any free port"; it now means what `--rest_api_port=0` means (no REST),
    and every use of the dashed spelling warns on stderr naming TF Serving's."""
    assert serve_config("--model_base_path=/m", f"--rest_api_port={port}").rest_port == rest_port
    assert capsys.readouterr().err == ""
    assert serve_config("--model_base_path=/m", "--rest-port", port).rest_port == rest_port
    err = capsys.readouterr().err
    assert "--rest-port is deprecated; use --rest_api_port" in err and "0 = no REST" in err
    assert ("REST is off" if rest_port == -1 else f"REST port {rest_port}") in err


def test_version_policy_flags_and_default():
    assert serve_config("--model_base_path=/m").served_models[0].policy == VersionPolicy.latest(1)
    assert ServerConfig(model_base_path="/m").version_policy == VersionPolicy.latest(1)  # TF Serving's default
    assert serve_config("--model_base_path=/m", "--num-versions=0").served_models[0].policy == VersionPolicy.every()
    assert serve_config("--model_base_path=/m", "--num-versions", "3").served_models[0].policy.num_versions == 3
    labels = serve_config("--model_base_path=/m", "--version-label", "stable=1").served_models[0].labels
    assert dict(labels) == {"stable": 1}


@pytest.mark.parametrize("argv,text", [
    ([], "--model_base_path"),
    (["--model_base_path=/m", f"--model_config_file={MODELS_CONFIG}"], "cannot be given together"),
    ([f"--model_config_file={MODELS_CONFIG}", "--model_name=x"], "--model_config_file and --model_name"),
    (["--model_base_path=/m", "--rest_api_port=1", "--rest-port=2"], "--rest_api_port and --rest-port"),
    (["--model_base_path=/m", "--enable_batching", "--no-batching"], "--enable_batching and --no-batching"),
    (["--model_base_path=/m", f"--batching_parameters_file={BATCHING}", "--max-batch-size=4"],
     "--batching_parameters_file and --max-batch-size"),
    (["--model_base_path=/m", "--version-label=stable"], "LABEL=VERSION"),
    (["--model_base_path=/m", "--num-versions=-1"], "--num-versions"),
    (["--model_base_path=/m", "--file_system_poll_wait_seconds=-1"], "--file_system_poll_wait_seconds"),
    (["--model_base_path=/m", "--model_config_file=/nonexistent/models.config"], "cannot be given together"),
    (["--model_config_file=/nonexistent/models.config"], "/nonexistent/models.config: cannot read"),
])
def test_flag_mistakes_are_named(argv, text):
    with pytest.raises(ValueError, match=None) as err:
        serve_config(*argv)
    assert text in str(err.value)


def test_bad_boolean_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit):
        serve_config("--model_base_path=/m", "--enable_batching=maybe")
    assert "expected true or false, got 'maybe'" in capsys.readouterr().err


# -- the model config file -----------------------------------------------------------------------
def test_model_config_policies_labels_and_several_models():
    models = parse_model_config('''
        model_config_list {
          config { name: "a" base_path: "/a" model_platform: "tensorflow"
                   model_version_policy { specific { versions: 2 versions: 1 } }
                   version_labels { key: "stable" value: 1 } version_labels { key: "canary" value: 2 } }
          config { name: "b" base_path: "rel/b" model_platform: "tensorflow" model_version_policy { all {} } }
          config { name: "c" base_path: "/c" model_platform: "tensorflow" model_version_policy { latest {} } }
          config { name: "d" base_path: "/d" model_platform: "tensorflow"
                   model_version_policy { latest { num_versions: 2 } } }
          config { name: "e" base_path: "/e" model_platform: "tensorflow" }
        }''', "x.config")
    by_name = {m.name: m for m in models}
    assert by_name["a"].policy == VersionPolicy.specific([1, 2]) and dict(by_name["a"].labels) == {"stable": 1,
                                                                                                   "canary": 2}
    assert by_name["b"].policy == VersionPolicy.every() and by_name["b"].base_path == "rel/b"
    assert by_name["c"].policy == by_name["e"].policy == VersionPolicy.latest(1)
    assert by_name["d"].policy == VersionPolicy.latest(2)


def test_version_policies_choose_like_tf_serving():
    on_disk = [1, 2, 5, 7]
    assert VersionPolicy().aspired(on_disk) == {7}
    assert VersionPolicy.latest(2).aspired(on_disk) == {5, 7}
    assert VersionPolicy.latest(9).aspired(on_disk) == set(on_disk)
    assert VersionPolicy.specific([2, 3]).aspired(on_disk) == {2}
    assert VersionPolicy.every().aspired(on_disk) == set(on_disk)
    assert VersionPolicy().aspired([]) == set()


@pytest.mark.parametrize("text,where", [
    ("model_config_list { config { name: \"a\" base_path: \"/a\" bogus: 1 } }",
     "x.config: line 1, column 56: not a ModelServerConfig text proto"),
    ("model_config_list { config { name: \"a\" base_path: \"/a\" ", "not a ModelServerConfig text proto"),
    ("", "x.config: expected a model_config_list"),
    ("custom_model_config { }", "custom_model_config is not supported"),
    ("model_config_list { }", "model_config_list has no config entries"),
    ("model_config_list { config { name: \"a\" base_path: \"/a\" } config { name: \"a\" base_path: \"/b\" } }",
     "config[1].name: model 'a' is already configured by config[0]"),
    ("model_config_list { config { name: \"a\" base_path: \"/a\" model_platform: \"tflite\" } }",
     "config[0].model_platform: 'tflite' is not supported"),
    ("model_config_list { config { name: \"\" base_path: \"/a\" } }", "config[0] (no name): name"),
    ("model_config_list { config { name: \"a\" } }", "config[0] (a): base_path"),
    ("model_config_list { config { name: \"a\" base_path: \"/a\" model_version_policy { specific { } } } }",
     "config[0] (a): model_version_policy.specific.versions"),
    ("model_config_list { config { name: \"a\" base_path: \"/a\" version_labels { key: \"s\" value: -1 } } }",
     "config[0] (a): version_labels"),
])
def test_malformed_model_config_names_file_and_field(text, where):
    with pytest.raises(ModelConfigError) as err:
        parse_model_config(text, "x.config")
    assert where in str(err.value)


def test_malformed_file_error_names_the_line(tmp_path):
    path = tmp_path / "models.config"
    path.write_text("model_config_list {\n  config {\n    name: \"a\"\n    base_pth: \"/a\"\n  }\n}\n")
    with pytest.raises(ModelConfigError) as err:
        read_model_config_file(str(path))
    assert f"{path}: line 4, column 5: not a ModelServerConfig text proto" in str(err.value)
    assert "base_pth" in str(err.value)


# -- the batching parameters and monitoring files ------------------------------------------------
@pytest.mark.parametrize("text,where", [
    ("max_batch_size { value: 0 }", "max_batch_size: expected a value >= 1, got 0"),
    ("max_batch_size { value: 8 } allowed_batch_sizes: 1 allowed_batch_sizes: 4", "allowed_batch_sizes: the last"),
    ("max_batch_size { value: 8 } allowed_batch_sizes: 4 allowed_batch_sizes: 2 allowed_batch_sizes: 8",
     "allowed_batch_sizes: expected increasing"),
    ("batch_timeout_micros { value: -5 }", "batch_timeout_micros: expected a value >= 0"),
    ("max_batch_size: 8", "not a BatchingParameters text proto"),
    ("max_batch_size { value: 8 } no_such_field { value: 1 }", "no_such_field"),
    ("pad_variable_length_inputs: true", "pad_variable_length_inputs"),
])
def test_malformed_batching_parameters_name_file_and_field(tmp_path, text, where):
    path = tmp_path / "batching.txt"
    path.write_text(text)
    with pytest.raises(ConfigFileError) as err:
        read_batching_parameters(str(path))
    assert str(path) in str(err.value) and where in str(err.value)


def test_batching_file_with_only_some_fields_keeps_the_other_defaults(tmp_path):
    path = tmp_path / "batching.txt"
    path.write_text("batch_timeout_micros { value: 2000 }\nnum_batch_threads { value: 2 }\n")
    cfg = serve_config("--model_base_path=/m", f"--batching_parameters_file={path}")
    assert cfg.batch_timeout_ms == 2.0 and cfg.max_batch_size == 8 and cfg.allowed_batch_sizes == ()


@pytest.mark.parametrize("text,enabled,route", [
    ("prometheus_config { enable: true }", True, "/monitoring/prometheus/metrics"),
    ("prometheus_config { enable: true path: \"/metrics\" }", True, "/metrics"),
    ("prometheus_config { enable: false path: \"/metrics\" }", False, "/metrics"),
    ("", False, "/monitoring/prometheus/metrics"),
])
def test_monitoring_config(tmp_path, text, enabled, route):
    path = tmp_path / "monitoring.config"
    path.write_text(text)
    monitoring = read_monitoring_config(str(path))
    assert (monitoring.prometheus_enabled, monitoring.prometheus_path) == (enabled, route)
    cfg = serve_config("--model_base_path=/m", f"--monitoring_config_file={path}")
    assert cfg.prometheus_path == (route if enabled else "")


@pytest.mark.parametrize("text,where", [
    ("prometheus_config { enable: true path: \"metrics\" }", "prometheus_config.path"),
    ("prometheus_config { enable: true path: \"/v1/models/x\" }", "prometheus_config.path"),
    ("prometheus_config { enable: yes_please }", "not a MonitoringConfig text proto"),
    ("prometheus { enable: true }", "not a MonitoringConfig text proto"),
])
def test_malformed_monitoring_config_names_file_and_field(tmp_path, text, where):
    path = tmp_path / "monitoring.config"
    path.write_text(text)
    with pytest.raises(ConfigFileError) as err:
        read_monitoring_config(str(path))
    assert str(path) in str(err.value) and where in str(err.value)


def test_unreadable_config_files_are_named(tmp_path):
    missing = str(tmp_path / "nope.txt")
    with pytest.raises(ConfigFileError, match="--batching_parameters_file .*nope.txt: cannot read"):
        read_batching_parameters(missing)
    with pytest.raises(ConfigFileError, match="--monitoring_config_file .*nope.txt: cannot read"):
        read_monitoring_config(missing)
    with pytest.raises(ModelConfigError, match="--model_config_file .*nope.txt: cannot read"):
        read_model_config_file(missing)
