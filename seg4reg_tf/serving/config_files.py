"""TF Serving's batching parameters file (`--batching_parameters_file`, a `BatchingParameters` text proto)
and monitoring config file (`--monitoring_config_file`, a `MonitoringConfig` text proto).

The pip package `tensorflow-serving-api` lacks these two message classes, so they are built here from
TF Serving's .proto definitions (same names, fields and numbers) and parsed with protobuf's text format:
the same files work with both servers. Problems are `ConfigFileError` (a ValueError) naming the file
and the field.
"""
from __future__ import annotations

import dataclasses
import functools
import logging

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format, wrappers_pb2

from seg4reg_tf import fileio
from seg4reg_tf.serving.batching import DEFAULT_MAX_BATCH_SIZE, check_allowed_batch_sizes
from seg4reg_tf.serving.model_config import parse_error_text

log = logging.getLogger("seg4reg_tf.serving")

DEFAULT_PROMETHEUS_PATH = "/monitoring/prometheus/metrics"  # TF Serving's PrometheusExporter::kPrometheusPath


class ConfigFileError(ValueError):
    """A malformed batching or monitoring config file; the message names the file and field."""


@dataclasses.dataclass(frozen=True)
class BatchingParameters:
    """What `seg4reg serve` uses of a BatchingParameters file. Times in ms; `None` = not set in the file."""

    max_batch_size: int | None = None
    batch_timeout_ms: float | None = None
    max_enqueued_batches: int | None = None
    allowed_batch_sizes: tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True)
class MonitoringConfig:
    """Prometheus metrics on the REST port at `prometheus_path` when `prometheus_enabled`."""

    prometheus_enabled: bool = False
    prometheus_path: str = DEFAULT_PROMETHEUS_PATH


_FD = descriptor_pb2.FieldDescriptorProto
_I64, _STR, _BOOL = ".google.protobuf.Int64Value", ".google.protobuf.StringValue", ".google.protobuf.BoolValue"
# tensorflow_serving/servables/tensorflow/session_bundle_config.proto, message BatchingParameters
_BATCHING_FIELDS = [
    ("max_batch_size", 1, _FD.TYPE_MESSAGE, _I64, False),
    ("batch_timeout_micros", 2, _FD.TYPE_MESSAGE, _I64, False),
    ("max_enqueued_batches", 3, _FD.TYPE_MESSAGE, _I64, False),
    ("num_batch_threads", 4, _FD.TYPE_MESSAGE, _I64, False),
    ("thread_pool_name", 5, _FD.TYPE_MESSAGE, _STR, False),
    ("allowed_batch_sizes", 6, _FD.TYPE_INT64, None, True),
    ("pad_variable_length_inputs", 7, _FD.TYPE_BOOL, None, False),
    ("enable_large_batch_splitting", 8, _FD.TYPE_MESSAGE, _BOOL, False),
    ("max_execution_batch_size", 9, _FD.TYPE_MESSAGE, _I64, False),
]
# tensorflow_serving/config/monitoring_config.proto
_PROMETHEUS_FIELDS = [("enable", 1, _FD.TYPE_BOOL, None, False), ("path", 2, _FD.TYPE_STRING, None, False)]
_MONITORING_FIELDS = [("prometheus_config", 1, _FD.TYPE_MESSAGE, ".tensorflow.serving.PrometheusConfig", False)]
# accepted and not needed here: one batch runs at a time per signature; large requests are always split
_IGNORED = ("num_batch_threads", "thread_pool_name", "enable_large_batch_splitting", "max_execution_batch_size")


@functools.lru_cache(maxsize=None)
def _message_class(full_name: str):
    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)
    specs = {
        "tensorflow.serving.BatchingParameters": (
            "tensorflow_serving/servables/tensorflow/session_bundle_config.proto",
            [("BatchingParameters", _BATCHING_FIELDS)]),
        "tensorflow.serving.MonitoringConfig": (
            "tensorflow_serving/config/monitoring_config.proto",
            [("PrometheusConfig", _PROMETHEUS_FIELDS), ("MonitoringConfig", _MONITORING_FIELDS)]),
    }
    proto_file, messages = specs[full_name]
    f = descriptor_pb2.FileDescriptorProto(name=proto_file, package="tensorflow.serving", syntax="proto3",
                                           dependency=["google/protobuf/wrappers.proto"])
    for msg_name, fields in messages:
        msg = f.message_type.add(name=msg_name)
        for name, number, kind, type_name, repeated in fields:
            field = msg.field.add(name=name, number=number, type=kind,
                                  label=_FD.LABEL_REPEATED if repeated else _FD.LABEL_OPTIONAL)
            if type_name:
                field.type_name = type_name
    pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(full_name))


def _parse(path: str, flag: str, full_name: str):
    try:
        text = fileio.read_text(path)
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigFileError(f"{flag} {path}: cannot read: {err}") from None
    message = _message_class(full_name)()
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as err:
        raise ConfigFileError(parse_error_text(path, full_name.rsplit(".", 1)[1], err)) from None
    return message


def read_batching_parameters(path: str) -> BatchingParameters:
    """A BatchingParameters text proto; ConfigFileError naming the file and field when malformed."""
    p = _parse(path, "--batching_parameters_file", "tensorflow.serving.BatchingParameters")

    def positive(field: str, minimum: int = 1) -> int | None:
        if not p.HasField(field):
            return None
        value = getattr(p, field).value
        if value < minimum:
            raise ConfigFileError(f"{path}: {field}: expected a value >= {minimum}, got {value}")
        return int(value)

    max_batch_size = positive("max_batch_size")
    timeout_us = positive("batch_timeout_micros", minimum=0)
    if timeout_us is not None and timeout_us > 60_000_000:
        raise ConfigFileError(f"{path}: batch_timeout_micros: expected at most 60000000 (60 s), got {timeout_us}")
    try:  # against the max_batch_size the server will use: the file's, else the default (as TF Serving)
        sizes = check_allowed_batch_sizes((int(s) for s in p.allowed_batch_sizes),
                                          DEFAULT_MAX_BATCH_SIZE if max_batch_size is None else max_batch_size)
    except ValueError as err:
        raise ConfigFileError(f"{path}: allowed_batch_sizes: {err}") from None
    if p.pad_variable_length_inputs:
        raise ConfigFileError(f"{path}: pad_variable_length_inputs: true is not supported by seg4reg serve "
                              "(requests merge only when their non-batch dimensions agree)")
    ignored = [name for name in _IGNORED if p.HasField(name)]
    if ignored:
        log.info("%s: %s accepted and not used (one batch runs at a time per model version and signature)",
                 path, ", ".join(ignored))
    return BatchingParameters(
        max_batch_size=max_batch_size,
        batch_timeout_ms=None if timeout_us is None else timeout_us / 1000.0,
        max_enqueued_batches=positive("max_enqueued_batches"),
        allowed_batch_sizes=sizes)


def read_monitoring_config(path: str) -> MonitoringConfig:
    """A MonitoringConfig text proto; ConfigFileError naming the file and field when malformed."""
    m = _parse(path, "--monitoring_config_file", "tensorflow.serving.MonitoringConfig")
    prometheus = m.prometheus_config
    route = prometheus.path or DEFAULT_PROMETHEUS_PATH
    try:
        check_prometheus_path(route)
    except ValueError as err:
        raise ConfigFileError(f"{path}: prometheus_config.path: {err}") from None
    return MonitoringConfig(prometheus_enabled=bool(prometheus.enable), prometheus_path=route)


def check_prometheus_path(route) -> None:
    """The rule for the REST path of the Prometheus page (the monitoring config file's and
    `ServerConfig.prometheus_path`'s): an absolute URL path, no query, no spaces, outside TF Serving's /v1/.
    ValueError saying what is wrong; callers prefix the file or field."""
    if not isinstance(route, str) or not route.startswith("/") or "?" in route \
            or any(c.isspace() for c in route) or route.startswith("/v1/"):
        raise ValueError(f"expected an absolute URL path outside /v1/, without '?' or spaces "
                         f"(e.g. {DEFAULT_PROMETHEUS_PATH!r}), got {route!r}")
