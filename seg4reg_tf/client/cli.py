"""`seg4reg predict INPUT... (--model|--server) --out DIR`: Cobb angles, JSON and overlays for X-ray files."""
from __future__ import annotations

import argparse
import os
import sys

from seg4reg_tf.cli_options import DeprecatedSpelling


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
    q.add_argument("--disagreement-threshold", type=_degrees, default=5.0, metavar="DEG",
                   help="flag heads_disagree when the regression heads' disagreement exceeds this (default 5 deg)")
    q.add_argument("--fitted-threshold", type=_degrees, default=20.0, metavar="DEG",
                   help="flag the image when the angles of the fitted vertebrae differ from the reported "
                        "ones by more than DEG degrees on average (default 20)")
    q.add_argument("--threshold", dest="disagreement_threshold", type=_degrees, action=DeprecatedSpelling,
                   new="--disagreement-threshold")
    q.add_argument("--geometry-threshold", dest="fitted_threshold", type=_degrees, action=DeprecatedSpelling,
                   new="--fitted-threshold")
    q.set_defaults(func=_predict)


def _predict(args) -> int:
    from seg4reg_tf.client.predict import LocalPredictor, ServerPredictor, run_predict

    if args.rest and not args.server:
        print("predict: --rest needs --server", file=sys.stderr)
        return 2
    missing = [p for p in args.inputs if not os.path.exists(p)]
    if missing:  # before TensorFlow and the model load (seconds)
        print(f"predict: no such file or folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    try:
        if args.model:
            predictor = LocalPredictor(args.model)
        else:
            predictor = ServerPredictor(args.server, rest=args.rest, model_name=args.model_name)
    except (FileNotFoundError, ValueError, OSError) as err:
        print(f"predict: {err}", file=sys.stderr)
        return 1
    return run_predict(args.inputs, args.out, predictor, disagreement_threshold=args.disagreement_threshold,
                       fitted_threshold=args.fitted_threshold)
