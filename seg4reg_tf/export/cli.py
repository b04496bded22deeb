"""`seg4reg export RUN_DIR [RUN_DIR ...] --out BASE --version N` (`seg4reg predict` is registered by client.cli)."""
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


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a trained run as a TF Serving SavedModel (BASE/N/)",
        description="Export RUN_DIR's model (with in-graph decoding + preprocessing) to BASE_PATH/VERSION/; "
                    "several RUN_DIRs export their ensemble (the mean of their outputs).",
    )
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                   help="run directory written by `seg4reg train`; several (same preprocessing and head): "
                        "their ensemble")
    p.add_argument("--out", required=True, metavar="BASE_PATH", help="TF Serving model base path")
    p.add_argument("--version", required=True, type=_positive_int, metavar="N",
                   help="version number (never overwritten)")
    p.add_argument("--tta", choices=("none", "flip"), default=None,
                   help="test-time augmentation in the exported graph (default: the run config's model.tta)")
    p.add_argument("--head", choices=("image", "segmentation", "mean", "geometry", "fused"), default=None,
                   help="which head is `cobb_angles` (default: the run config's model.head); "
                        "choose it on validation data")
    p.add_argument("--weights", choices=("float32", "float16"), default="float32",
                   help="dtype the variables are stored in; float16 halves the model's size and still "
                        "computes in float32 (default float32)")
    p.add_argument("--intervals", default=None, metavar="JSON",
                   help="calibrated 90%% intervals per angle for this model (benchmarks/interval_calibration.py "
                        "--write): adds cobb_angles_lower / cobb_angles_upper")
    p.add_argument("--allow-unfinished", action="store_true",
                   help="export an interrupted or unfinished run's best checkpoint so far (refused otherwise)")
    p.set_defaults(func=_export)


def _export(args) -> int:
    from seg4reg_tf.export.savedmodel import export_run

    try:
        path = export_run(args.run_dirs, args.out, args.version, tta=args.tta, head=args.head,
                          allow_unfinished=args.allow_unfinished, weights_dtype=args.weights,
                          intervals=args.intervals)
    except (OSError, ValueError) as err:  # FileExistsError, FileNotFoundError, a full disk (fileio.NoSpaceError), ...
        print(f"export: {err}", file=sys.stderr)
        return 1
    if args.allow_unfinished:
        from seg4reg_tf.training.run import run_state

        for run_dir in args.run_dirs:
            state = run_state(run_dir)
            if state.status != "finished":
                print(f"export: {state.detail}; exported its best checkpoint so far (model.keras)", file=sys.stderr)
    print(path)
    return 0
