"""`seg4reg serve`: the local TF-Serving-compatible gRPC + REST server."""
from __future__ import annotations

import argparse
import logging
import signal
import threading

from seg4reg_tf.serving.serve_flags import add_serve_arguments

log = logging.getLogger("seg4reg_tf.serving")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "serve",
        help="serve SavedModel versions over TF Serving's gRPC and REST APIs (TF Serving's flags and config files)",
        description="Serve BASE_PATH/<version>/saved_model.pb (--model_base_path) or the models of a TF Serving "
                    "model config file (--model_config_file) with TensorFlow Serving's PredictionService and "
                    "ModelService (gRPC) and its REST API. Takes TF Serving's flag spellings (--flag=value or "
                    "--flag value) and its batching and monitoring config files. Each model serves the versions "
                    "its policy picks (default: the newest only); new version directories are loaded while "
                    "running. gRPC messages up to 256 MiB are accepted: clients must raise "
                    "grpc.max_send/receive_message_length too.")
    add_serve_arguments(p)
    p.set_defaults(func=_serve)  # (`export` is registered by seg4reg_tf.export.cli)


def _serve(args: argparse.Namespace) -> int:
    from seg4reg_tf.serving.serve_flags import config_from_args
    from seg4reg_tf.serving.server import ModelLoadError, ModelServer

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        config = config_from_args(args)
    except ValueError as err:
        log.error("serve: %s", err)
        return 2
    server = ModelServer(config)
    try:
        server.start(load_first=True)  # as TF Serving: the models load and warm up, then the ports open
    except (OSError, ModelLoadError) as err:
        log.error("serve: %s", err)
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
