"""`seg4reg predict INPUT... (--model|--server) --out DIR` and `seg4reg serve` (the local TF-Serving-compatible
gRPC + REST server)."""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

log = logging.getLogger("seg4reg_tf.serving")


def _degrees(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected degrees (a number >= 0), got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected degrees (a number >= 0), got {text!r}")
    return value


def register(subparsers) -> None:
    q = subparsers.add_parser(
        "predict",
        help="Cobb angles + overlays for images (JPEG, PNG 8/16-bit, DICOM) or folders",
        description="Writes OUT/<stem>.json and OUT/<stem>_overlay.png per image, OUT/summary.csv for folders.",
    )
    q.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR")
    src = q.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", metavar="PATH", help="SavedModel version dir or TF Serving base path (newest version)")
    src.add_argument("--server", metavar="HOST:PORT", help="a TF Serving compatible server (gRPC unless --rest)")
    q.add_argument("--rest", action="store_true", help="talk REST to --server")
    q.add_argument("--model-name", default="seg4reg", help="model name on the server (default seg4reg)")
    q.add_argument("--out", required=True, metavar="DIR", help="output folder")
    q.add_argument("--threshold", type=_degrees, default=5.0, metavar="DEG",
                   help="flag heads_disagree when the consistency exceeds this (default 5 deg)")
    q.add_argument("--geometry-threshold", type=_degrees, default=20.0, metavar="DEG",
                   help="flag the image when the angles of the fitted vertebrae differ from the reported "
                        "ones by more than DEG degrees on average (default 20)")
    q.set_defaults(func=_predict)

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
    p.add_argument("--max-images-per-request", type=int, default=256,
                   help="items per Predict; more is INVALID_ARGUMENT (default 256)")
    p.add_argument("--max-request-pixels", type=int, default=1_000_000_000,
                   help="decoded pixels per Predict, read from the image headers; more is INVALID_ARGUMENT "
                        "(default 1e9). Large requests run in chunks of --max-batch-size images so that other "
                        "clients interleave; a cancelled or expired request's remaining chunks are dropped")
    p.add_argument("--poll-seconds", type=float, default=2.0, help="how often BASE_PATH is re-scanned")
    p.add_argument("--num-versions", type=int, default=0,
                   help="keep only the newest N versions loaded (0 = all complete versions)")
    p.add_argument("--version-label", action="append", default=[], metavar="LABEL=VERSION",
                   help="version label, e.g. stable=1 (repeatable)")
    p.set_defaults(func=_serve)  # (`export` is registered by seg4reg_tf.export.cli)


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
            version_labels=_labels(args.version_label), enable_warmup=not args.no_warmup,
            max_images_per_request=args.max_images_per_request, max_request_pixels=args.max_request_pixels)
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


def _predict(args) -> int:
    from seg4reg_tf.serving.predict import LocalPredictor, ServerPredictor, run_predict

    if args.rest and not args.server:
        print("predict: --rest needs --server", file=sys.stderr)
        return 2
    try:
        if args.model:
            predictor = LocalPredictor(args.model)
        else:
            predictor = ServerPredictor(args.server, rest=args.rest, model_name=args.model_name)
    except (FileNotFoundError, ValueError, OSError) as err:
        print(f"predict: {err}", file=sys.stderr)
        return 1
    return run_predict(args.inputs, args.out, predictor, threshold=args.threshold,
                       geometry_threshold=args.geometry_threshold)
