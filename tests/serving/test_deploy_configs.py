"""The real TF Serving deployment files under serving/ parse as the protos / YAML they claim to be."""
from __future__ import annotations

import dataclasses
import os
import re

import pytest
import yaml
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format, wrappers_pb2
from tensorflow_serving.config import model_server_config_pb2

from seg4reg_tf.serving.config import ServerConfig

SERVING = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "serving")


def _read(name: str) -> str:
    with open(os.path.join(SERVING, name), encoding="utf-8") as f:
        return f.read()


def _message_class(full_name: str, proto_file: str, fields, messages=()):
    """Build a message class from a copy of TF Serving's .proto (the pip package lacks these modules)."""
    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)
    f = descriptor_pb2.FileDescriptorProto(name=proto_file, package="tensorflow.serving", syntax="proto3",
                                           dependency=["google/protobuf/wrappers.proto"])
    FD = descriptor_pb2.FieldDescriptorProto
    for msg_name, msg_fields in list(messages) + [(full_name.rsplit(".", 1)[1], fields)]:
        msg = f.message_type.add(name=msg_name)
        for name, number, kind, type_name, repeated in msg_fields:
            field = msg.field.add(name=name, number=number, type=kind,
                                  label=FD.LABEL_REPEATED if repeated else FD.LABEL_OPTIONAL)
            if type_name:
                field.type_name = type_name
    pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(full_name))


def batching_parameters_class():
    try:  # present in some tensorflow-serving builds
        from tensorflow_serving.servables.tensorflow import session_bundle_config_pb2

        return session_bundle_config_pb2.BatchingParameters
    except ImportError:
        pass
    FD = descriptor_pb2.FieldDescriptorProto
    i64, s = ".google.protobuf.Int64Value", ".google.protobuf.StringValue"
    # tensorflow_serving/servables/tensorflow/session_bundle_config.proto, message BatchingParameters
    fields = [("max_batch_size", 1, FD.TYPE_MESSAGE, i64, False),
              ("batch_timeout_micros", 2, FD.TYPE_MESSAGE, i64, False),
              ("max_enqueued_batches", 3, FD.TYPE_MESSAGE, i64, False),
              ("num_batch_threads", 4, FD.TYPE_MESSAGE, i64, False),
              ("thread_pool_name", 5, FD.TYPE_MESSAGE, s, False),
              ("allowed_batch_sizes", 6, FD.TYPE_INT64, None, True),
              ("pad_variable_length_inputs", 7, FD.TYPE_BOOL, None, False)]
    return _message_class("tensorflow.serving.BatchingParameters",
                          "tensorflow_serving/servables/tensorflow/session_bundle_config.proto", fields)


def monitoring_config_class():
    try:
        from tensorflow_serving.config import monitoring_config_pb2

        return monitoring_config_pb2.MonitoringConfig
    except ImportError:
        pass
    FD = descriptor_pb2.FieldDescriptorProto
    # tensorflow_serving/config/monitoring_config.proto
    prometheus = [("enable", 1, FD.TYPE_BOOL, None, False), ("path", 2, FD.TYPE_STRING, None, False)]
    fields = [("prometheus_config", 1, FD.TYPE_MESSAGE, ".tensorflow.serving.PrometheusConfig", False)]
    return _message_class("tensorflow.serving.MonitoringConfig", "tensorflow_serving/config/monitoring_config.proto",
                          fields, messages=[("PrometheusConfig", prometheus)])


def test_models_config_is_a_model_server_config():
    cfg = text_format.Parse(_read("models.config"), model_server_config_pb2.ModelServerConfig())
    (model,) = cfg.model_config_list.config
    assert model.name == "seg4reg"
    assert model.base_path == "/models/seg4reg"
    assert model.model_platform == "tensorflow"
    assert model.model_version_policy.WhichOneof("policy_choice") == "latest"
    assert model.model_version_policy.latest.num_versions == 1


def test_models_config_canary_example_is_valid_when_uncommented():
    text = _read("models.config")
    block = text.split("# Replace the policy above with:", 1)[1].split("# (Labels", 1)[0]
    uncommented = "\n".join(line.strip()[1:] for line in block.strip().splitlines())
    cfg = text_format.Parse(
        f'model_config_list {{ config {{ name: "seg4reg" base_path: "/models/seg4reg" {uncommented} }} }}',
        model_server_config_pb2.ModelServerConfig())
    model = cfg.model_config_list.config[0]
    assert list(model.model_version_policy.specific.versions) == [1, 2]
    assert dict(model.version_labels) == {"stable": 1, "canary": 2}


def test_batching_parameters_parse_and_match_the_local_server():
    params = text_format.Parse(_read("batching_parameters.txt"), batching_parameters_class()())
    local = {f.name: f.default for f in dataclasses.fields(ServerConfig)}  # `seg4reg serve` batches alike
    assert params.max_batch_size.value == local["max_batch_size"]
    assert params.batch_timeout_micros.value == round(local["batch_timeout_ms"] * 1000)
    assert params.num_batch_threads.value >= 1
    sizes = list(params.allowed_batch_sizes)
    assert sizes == sorted(sizes) and sizes[-1] == params.max_batch_size.value  # TF Serving's rule


def test_monitoring_config_parses_and_is_where_k8s_scrapes():
    cfg = text_format.Parse(_read("monitoring.config"), monitoring_config_class()())
    assert cfg.prometheus_config.enable is True
    deployment = next(d for d in yaml.safe_load_all(_read("k8s/seg4reg-serving.yaml")) if d["kind"] == "Deployment")
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert cfg.prometheus_config.path == annotations["prometheus.io/path"]


def _flags(args: list[str]) -> dict[str, str]:
    out = {}
    for arg in args:
        m = re.fullmatch(r"--([a-z_]+)=(.*)", arg)
        assert m, f"flag {arg!r} is not --name=value"
        out[m[1]] = m[2]
    return out


def test_docker_compose_runs_tf_serving_with_existing_files():
    compose = yaml.safe_load(_read("docker-compose.yml"))
    service = compose["services"]["tfserving"]
    assert "tensorflow/serving" in service["image"]
    flags = _flags(service["command"])
    for name in ("model_config_file", "enable_batching", "batching_parameters_file", "monitoring_config_file",
                 "enable_model_warmup", "grpc_max_threads", "rest_api_port", "port"):
        assert name in flags, name
    assert flags["port"] == "8500" and flags["rest_api_port"] == "8501"
    assert flags["enable_batching"] == flags["enable_model_warmup"] == "true"
    published = {p.rsplit(":", 1)[-1].split()[0] for p in service["ports"]}
    assert published == {"8500", "8501"}
    mounts = {}
    for volume in service["volumes"]:
        source, target = volume.split(":")[:2]
        path = os.path.normpath(os.path.join(SERVING, source))
        assert os.path.exists(path), f"docker-compose mounts {source}, which does not exist"
        mounts[target] = path
    for name in ("model_config_file", "batching_parameters_file", "monitoring_config_file"):
        assert os.path.isfile(mounts[flags[name]]), f"--{name}={flags[name]} is not mounted from a file"
    cfg = text_format.Parse(_read("models.config"), model_server_config_pb2.ModelServerConfig())
    base = cfg.model_config_list.config[0].base_path
    assert any(base.startswith(t + "/") and os.path.isdir(p) for t, p in mounts.items()), \
        f"base_path {base} is not under a mounted model directory"


def test_k8s_manifest_uses_the_same_configs():
    docs = list(yaml.safe_load_all(_read("k8s/seg4reg-serving.yaml")))
    kinds = {d["kind"]: d for d in docs}
    assert set(kinds) == {"Deployment", "Service"}
    container = kinds["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    flags = _flags(container["args"])
    for name in ("model_config_file", "batching_parameters_file", "monitoring_config_file"):
        assert os.path.isfile(os.path.join(SERVING, os.path.basename(flags[name]))), name
    assert {p["port"] for p in kinds["Service"]["spec"]["ports"]} == {8500, 8501}
    probe = container["readinessProbe"]  # a check that can fail until a version is AVAILABLE (test_readiness.py)
    assert "httpGet" not in probe and probe["exec"]["command"][:2] == ["bash", "-c"]
    assert "/v1/models/seg4reg" in probe["exec"]["command"][2] and "AVAILABLE" in probe["exec"]["command"][2]


@pytest.mark.parametrize("where", ["docker-compose", "k8s"])
def test_seg4reg_serve_accepts_the_tf_serving_command_lines(where):
    """The flags the deployments give tensorflow_model_server configure `seg4reg serve` the same way."""
    import argparse

    from seg4reg_tf.serving.cli import register
    from seg4reg_tf.serving.serve_flags import config_from_args

    if where == "docker-compose":
        argv = yaml.safe_load(_read("docker-compose.yml"))["services"]["tfserving"]["command"]
    else:
        deployment = next(d for d in yaml.safe_load_all(_read("k8s/seg4reg-serving.yaml")) if d["kind"] == "Deployment")
        argv = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    argv = [a.replace("/config/", SERVING + "/") for a in argv]
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    cfg = config_from_args(parser.parse_args(["serve", *argv]))
    assert (cfg.port, cfg.rest_port) == (8500, 8501)
    assert [m.name for m in cfg.served_models] == ["seg4reg"] and cfg.served_models[0].base_path == "/models/seg4reg"
    assert cfg.enable_batching and cfg.enable_warmup and cfg.max_batch_size == 8
    assert cfg.prometheus_path == "/monitoring/prometheus/metrics" and cfg.grpc_max_workers == 32


def test_readme_documents_message_size():
    text = _read("README.md")
    assert "grpc.max_receive_message_length" in text and "serving_default" in text


@pytest.mark.parametrize("name", ["models.config", "batching_parameters.txt", "monitoring.config"])
def test_configs_have_no_machine_paths(name):
    assert "/work/" not in _read(name) and "/home/" not in _read(name)
