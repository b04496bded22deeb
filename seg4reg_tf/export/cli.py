"""`seg4reg export RUN_DIR --out BASE --version N` and `seg4reg predict INPUT... (--model|--server) --out DIR`."""
from __future__ import annotations

import argparse
import sys


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _degrees(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected degrees (a number >= 0), got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected degrees (a number >= 0), got {text!r}")
    return value


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a trained run as a TF Serving SavedModel (BASE/N/)",
        description="Export RUN_DIR's model (with in-graph decoding + preprocessing) to BASE_PATH/VERSION/.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="run directory written by `seg4reg train`")
    p.add_argument("--out", required=True, metavar="BASE_PATH", help="TF Serving model base path")
    p.add_argument("--version", required=True, type=_positive_int, metavar="N", help="version number (never overwritten)")
    p.add_argument("--tta", choices=("none", "flip"), default=None,
                   help="test-time augmentation in the exported graph (default: the run config's model.tta)")
    p.set_defaults(func=_export)

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
    q.set_defaults(func=_predict)


def _export(args) -> int:
    from seg4reg_tf.export.savedmodel import export_run

    try:
        path = export_run(args.run_dir, args.out, args.version, tta=args.tta)
    except (FileExistsError, FileNotFoundError, ValueError) as err:
        print(f"export: {err}", file=sys.stderr)
        return 1
    print(path)
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
    return run_predict(args.inputs, args.out, predictor, threshold=args.threshold)
