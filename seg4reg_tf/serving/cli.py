"""`seg4reg serve`: the local TF-Serving-compatible gRPC + REST server."""
from __future__ import annotations

import argparse
import logging
import signal
import threading

log = logging.getLogger("seg4reg_tf.serving")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "serve",
        help="serve SavedModel versions over TF Serving's gRPC and REST APIs",
        description="Serve BASE_PATH/<version>/saved_model.pb with TensorFlow Serving's PredictionService "
                    "and ModelService (gRPC) and its REST API. New version directories are loaded while "
                    "running; the newest answers by default. gRPC messages up to 256 MiB are accepted: "
                    "clients must raise grpc.max_send/receive_message_length too.")
    p.add_argument("--model-base-path", required=True, help="directory holding numeric version directories")
    p.add_argument("--model-name", default="seg4reg")
    p.add_argument("--port", type=int, default=8500, help="gRPC port (0 = any free port)")
    p.add_argument("--rest-port", type=int, default=8501, help="REST port (0 = any free port, -1 = off)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 to expose)")
    p.add_argument("--max-batch-size", type=int, default=8)
    p.add_argument("--batch-timeout-ms", type=float, default=5.0)
    p.add_argument("--no-batching", action="store_true", help="run every request on its own")
    p.add_argument("--no-warmup", action="store_true",
                   help="do not replay assets.extra/tf_serving_warmup_requests before serving a version "
                        "(default: replay, as TF Serving's --enable_model_warmup; a failing warmup fails "
                        "that version's load)")
    p.add_argument("--poll-seconds", type=float, default=2.0, help="how often BASE_PATH is re-scanned")
    p.add_argument("--num-versions", type=int, default=0,
                   help="keep only the newest N versions loaded (0 = all complete versions)")
    p.add_argument("--version-label", action="append", default=[], metavar="LABEL=VERSION",
                   help="version label, e.g. stable=1 (repeatable)")
    p.set_defaults(func=_serve)  # (`export` and `predict` are registered by seg4reg_tf.export.cli)


def _labels(items: list[str]) -> dict[str, int]:
    labels = {}
    for item in items:
        label, sep, version = item.partition("=")
        if not sep or not label or not version.isdigit():
            raise ValueError(f"--version-label: expected LABEL=VERSION (e.g. stable=1), got {item!r}")
        labels[label] = int(version)
    return labels


def _serve(args: argparse.Namespace) -> int:
    from seg4reg_tf.serving.server import ModelServer, ServerConfig

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        config = ServerConfig(
            model_base_path=args.model_base_path, model_name=args.model_name, port=args.port,
            rest_port=args.rest_port, host=args.host, max_batch_size=args.max_batch_size,
            batch_timeout_ms=args.batch_timeout_ms, enable_batching=not args.no_batching,
            poll_seconds=args.poll_seconds, num_versions=args.num_versions,
            version_labels=_labels(args.version_label), enable_warmup=not args.no_warmup)
    except ValueError as err:
        log.error("%s", err)
        return 2
    server = ModelServer(config)
    try:
        server.start()
    except OSError as err:
        log.error("%s", err)
        return 1
    stop = threading.Event()

    def _on_signal(signum, _frame):
        log.info("received %s, shutting down", signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop(grace=5.0)
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 0
