"""The flags of `seg4reg serve`: TF Serving's spellings (`--model_base_path=/m`, `--port 8500`,
`--enable_batching`, `--enable_batching=false`, ...) and the earlier dashed names, turned into a
`ServerConfig` (reading the model config, batching parameters and monitoring config files). A dashed alias
means what its TF Serving flag means; `--rest-port`, which once meant something else, warns on stderr.

| TF Serving flag | dashed alias | meaning here |
|---|---|---|
| `--model_name` | `--model-name` | model name (default seg4reg; TF Serving's default is "default") |
| `--model_base_path` | `--model-base-path` | one model's base path (or `--model_config_file`) |
| `--model_config_file` | | ModelServerConfig text proto: several models, version policies, labels |
| `--port` | | gRPC port (0 = any free port) |
| `--rest_api_port` | `--rest-port` (deprecated) | REST port (default 8501); 0 = no REST, as in TF Serving |
| `--enable_batching[=BOOL]` | `--no-batching` | server-side batching (on by default here) |
| `--batching_parameters_file` | | BatchingParameters text proto (max_batch_size, batch_timeout_micros, ...) |
| `--monitoring_config_file` | | MonitoringConfig text proto: Prometheus metrics on the REST port |
| `--enable_model_warmup[=BOOL]` | `--no-warmup` | replay assets.extra/tf_serving_warmup_requests (on by default) |
| `--file_system_poll_wait_seconds` | `--poll-seconds` | base path polling period (0 = scan once) |
| `--rest_api_timeout_in_ms` | | REST answer deadline |
| `--grpc_max_threads`, `--rest_api_num_threads` | | gRPC / REST worker threads |
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING

# the defaults' owners (imported without numpy or TensorFlow: `seg4reg --help` stays quick)
from seg4reg_tf.serving.batching import DEFAULT_BATCH_TIMEOUT_MS, DEFAULT_MAX_BATCH_SIZE
from seg4reg_tf.serving.request_limits import DEFAULT_MAX_IMAGES, DEFAULT_MAX_REQUEST_PIXELS

if TYPE_CHECKING:  # imported in config_from_args: `seg4reg --help` stays quick (serving.config imports protobuf)
    from seg4reg_tf.serving.config import ServerConfig

log = logging.getLogger("seg4reg_tf.serving")

_TRUE = {"true", "t", "1", "yes", "y"}
_FALSE = {"false", "f", "0", "no", "n"}


def tf_bool(text: str) -> bool:
    """A TF Serving (absl) boolean flag value: true/false, 1/0, yes/no (any case)."""
    value = str(text).strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _bool_flag(p: argparse.ArgumentParser, flag: str, dest: str, help_text: str) -> None:
    p.add_argument(flag, dest=dest, nargs="?", const=True, default=None, type=tf_bool, metavar="BOOL", help=help_text)


def add_serve_arguments(p: argparse.ArgumentParser) -> None:
    """Register the `serve` flags on `p` (values stay None when not given, so conflicts can be named)."""
    add = p.add_argument
    add("--model_base_path", "--model-base-path", dest="model_base_path", metavar="PATH",
        help="directory holding numeric version directories (one model)")
    add("--model_name", "--model-name", dest="model_name", help="model name (default seg4reg)")
    add("--model_config_file", metavar="FILE",
        help="TF Serving's ModelServerConfig text proto: several models, version policies, version labels")
    add("--port", type=int, default=8500, help="gRPC port (default 8500; 0 = any free port)")
    add("--rest_api_port", type=int, metavar="PORT", help="REST port (default 8501); 0 = no REST, as in TF Serving")
    add("--rest-port", dest="rest_port", type=int, metavar="PORT",
        help="deprecated spelling of --rest_api_port, with its meaning (0 = no REST)")
    add("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; 0.0.0.0 to expose)")
    _bool_flag(p, "--enable_batching", "enable_batching", "server-side batching (default true)")
    add("--no-batching", dest="no_batching", action="store_true", help="= --enable_batching=false")
    add("--batching_parameters_file", metavar="FILE",
        help="TF Serving's BatchingParameters text proto (max_batch_size, batch_timeout_micros, "
             "max_enqueued_batches, allowed_batch_sizes)")
    add("--max-batch-size", dest="max_batch_size", type=int,
        help=f"largest merged batch (default {DEFAULT_MAX_BATCH_SIZE})")
    add("--batch-timeout-ms", dest="batch_timeout_ms", type=float,
        help=f"batch fill wait, ms (default {DEFAULT_BATCH_TIMEOUT_MS:g})")
    add("--monitoring_config_file", metavar="FILE",
        help="TF Serving's MonitoringConfig text proto: prometheus_config { enable: true path: ... }")
    _bool_flag(p, "--enable_model_warmup", "enable_warmup",
               "replay assets.extra/tf_serving_warmup_requests before a version is AVAILABLE (default true; a "
               "failing warmup fails that version's load)")
    add("--no-warmup", dest="no_warmup", action="store_true", help="= --enable_model_warmup=false")
    add("--file_system_poll_wait_seconds", "--poll-seconds", dest="poll_seconds", type=float, metavar="S",
        help="how often the base paths are re-scanned, seconds (default 2; 0 = only at start)")
    add("--num-versions", dest="num_versions", type=int, metavar="N",
        help="one model: serve the newest N versions (default 1, TF Serving's policy; 0 = all complete versions)")
    add("--version-label", dest="version_label", action="append", default=[], metavar="LABEL=VERSION",
        help="one model: version label, e.g. stable=1 (repeatable)")
    add("--rest_api_timeout_in_ms", type=int, metavar="MS", help="REST answer deadline (default 30000)")
    add("--grpc_max_threads", type=int, metavar="N", help="gRPC worker threads (default 32)")
    add("--rest_api_num_threads", type=int, metavar="N", help="REST worker threads (default 32)")
    add("--model_config_file_poll_wait_seconds", type=int, default=0, metavar="S",
        help="accepted for compatibility; the model config file is read once at start")
    add("--max-images-per-request", dest="max_images_per_request", type=int,
        help=f"items per Predict; more is INVALID_ARGUMENT (default {DEFAULT_MAX_IMAGES})")
    add("--max-request-pixels", dest="max_request_pixels", type=int,
        help=f"decoded pixels per Predict, read from the image headers; more is INVALID_ARGUMENT (default "
             f"{DEFAULT_MAX_REQUEST_PIXELS:,}). Large requests run in chunks of --max-batch-size images so that "
             "other clients interleave")


def _conflict(args, *flags: tuple[str, str]) -> None:
    given = [flag for flag, dest in flags if getattr(args, dest) not in (None, False, [])]
    if len(given) > 1:
        raise ValueError(f"{' and '.join(given)} cannot be given together")


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    """The ServerConfig of parsed `serve` flags (reads the config files); ValueError naming the flag or file."""
    from seg4reg_tf.serving.config import ServerConfig
    from seg4reg_tf.serving.config_files import read_batching_parameters, read_monitoring_config
    from seg4reg_tf.serving.model_config import VersionPolicy, read_model_config_file

    _conflict(args, ("--model_config_file", "model_config_file"), ("--model_base_path", "model_base_path"))
    _conflict(args, ("--model_config_file", "model_config_file"), ("--model_name", "model_name"))
    _conflict(args, ("--model_config_file", "model_config_file"), ("--num-versions", "num_versions"))
    _conflict(args, ("--model_config_file", "model_config_file"), ("--version-label", "version_label"))
    _conflict(args, ("--rest_api_port", "rest_api_port"), ("--rest-port", "rest_port"))
    _conflict(args, ("--enable_batching", "enable_batching"), ("--no-batching", "no_batching"))
    _conflict(args, ("--enable_model_warmup", "enable_warmup"), ("--no-warmup", "no_warmup"))
    _conflict(args, ("--batching_parameters_file", "batching_parameters_file"), ("--max-batch-size", "max_batch_size"))
    _conflict(args, ("--batching_parameters_file", "batching_parameters_file"),
              ("--batch-timeout-ms", "batch_timeout_ms"))
    if not args.model_config_file and not args.model_base_path:
        raise ValueError("give --model_base_path (one model) or --model_config_file (several)")
    kw: dict = {"port": args.port, "host": args.host}
    for key in ("max_images_per_request", "max_request_pixels"):  # not given: ServerConfig's (RequestLimits') default
        if getattr(args, key) is not None:
            kw[key] = getattr(args, key)
    if args.model_config_file:
        kw["models"] = tuple(read_model_config_file(args.model_config_file))
        if args.model_config_file_poll_wait_seconds:
            log.warning("--model_config_file_poll_wait_seconds: the model config file is read once at start")
    else:
        kw.update(model_base_path=args.model_base_path, model_name=args.model_name or "seg4reg",
                  version_labels=_labels(args.version_label))
        if args.num_versions is not None:
            if args.num_versions < 0:
                raise ValueError(f"--num-versions: expected N >= 0 (0 = all versions), got {args.num_versions}")
            kw["version_policy"] = VersionPolicy.latest(args.num_versions) if args.num_versions \
                else VersionPolicy.every()
    rest_api_port = args.rest_api_port
    if args.rest_port is not None:
        now = "REST is off" if args.rest_port in (0, -1) else f"REST port {args.rest_port}"
        print(f"seg4reg serve: warning: --rest-port is deprecated; use --rest_api_port (TF Serving's flag), whose "
              f"meaning it now has: 0 = no REST, no longer any free port ({now})", file=sys.stderr)
        rest_api_port = args.rest_port
    if rest_api_port is not None:
        kw["rest_port"] = -1 if rest_api_port == 0 else rest_api_port  # TF Serving: 0 = no REST
    kw["enable_batching"] = not args.no_batching and args.enable_batching is not False
    kw["enable_warmup"] = not args.no_warmup and args.enable_warmup is not False
    if args.batching_parameters_file:
        params = read_batching_parameters(args.batching_parameters_file)
        for key in ("max_batch_size", "batch_timeout_ms"):
            if getattr(params, key) is not None:
                kw[key] = getattr(params, key)
        if params.max_enqueued_batches is not None:
            kw["max_enqueued_batches"] = params.max_enqueued_batches
        kw["allowed_batch_sizes"] = params.allowed_batch_sizes
    for key in ("max_batch_size", "batch_timeout_ms"):
        if getattr(args, key) is not None:
            kw[key] = getattr(args, key)
    if args.monitoring_config_file:
        monitoring = read_monitoring_config(args.monitoring_config_file)
        kw["prometheus_path"] = monitoring.prometheus_path if monitoring.prometheus_enabled else ""
    if args.poll_seconds is not None:
        if args.poll_seconds < 0:
            raise ValueError(f"--file_system_poll_wait_seconds: expected seconds >= 0, got {args.poll_seconds:g}")
        kw["poll_seconds"] = args.poll_seconds or 0.0
    for flag, key in (("rest_api_timeout_in_ms", "rest_api_timeout_ms"), ("grpc_max_threads", "grpc_max_workers"),
                      ("rest_api_num_threads", "rest_threads")):
        if getattr(args, flag) is not None:
            kw[key] = getattr(args, flag)
    return ServerConfig(**kw)


def _labels(items: list[str]) -> dict[str, int]:
    labels = {}
    for item in items:
        label, sep, version = item.partition("=")
        if not sep or not label or not version.isdigit():
            raise ValueError(f"--version-label: expected LABEL=VERSION (e.g. stable=1), got {item!r}")
        labels[label] = int(version)
    return labels
