"""`seg4reg evaluate` (a run or an exported SavedModel on a labelled split) and `seg4reg calibrate` (a version's
intervals refitted on a site's labelled films)."""
from __future__ import annotations

import argparse
import os
import sys

from seg4reg_tf import fileio
from seg4reg_tf.cli_options import DeprecatedSpelling


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="evaluate a run (--run) or a SavedModel / TF Serving base path (--model) on a labelled split",
        description="Writes OUT/report.json, OUT/cases.csv, OUT/pred_vs_true.png and OUT/bland_altman.png.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", metavar="RUN_DIR", help="run directory written by `seg4reg train`")
    src.add_argument("--model", metavar="PATH", help="SavedModel directory or TF Serving base path (newest version)")
    p.add_argument("--data", required=True, metavar="ROOT", help="dataset root in the AASCE layout")
    p.add_argument("--split", required=True, metavar="NAME", help="split name, e.g. training or test")
    p.add_argument("--val", action="store_true",
                   help="only the fixed validation subset of the split (index %% 5 == 4, aasce.train_val_split)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--batch-size", type=int, default=8, help="images per model call (default 8)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="evaluate only the first N images")
    p.add_argument("--max-missing", type=int, default=3,
                   help="vertebrae interpolated before the fitted vertebrae's angles count as failed (default 3)")
    p.add_argument("--fitted-corners", choices=("quad", "rect"), default="quad",
                   help="vertebra corner fit of the fitted vertebrae (default quad)")
    p.add_argument("--seg-fit", dest="fitted_corners", choices=("quad", "rect"), action=DeprecatedSpelling,
                   new="--fitted-corners")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--tta", choices=("none", "flip"), default=None,
                   help="--run only: test-time augmentation (default: the run config's model.tta; an exported "
                        "model has its own in the graph)")
    p.add_argument("--allow-unfinished", action="store_true",
                   help="--run only: evaluate an interrupted or unfinished run's best checkpoint so far "
                        "(refused otherwise)")
    p.set_defaults(func=run_evaluate)

    c = subparsers.add_parser(
        "calibrate",
        help="refit a version's 90%% intervals on your own labelled films (a new version, same network)",
        description="Measure the coverage of the model's intervals on the labelled films of an AASCE-format root "
                    "(your site's), refit the interval quantile per angle on the measurable ones, and export the "
                    "same network with the new constants as a new version. Run it before clinical use at a new "
                    "site, and again when the scanner or the population changes.",
    )
    c.add_argument("--model", required=True, metavar="PATH",
                   help="a version directory (BASE/N) or a TF Serving base path (its newest version); one "
                        "network exported with --weights float16, as the shipped versions are")
    c.add_argument("--data", required=True, metavar="ROOT", help="AASCE-format root with your labelled films")
    c.add_argument("--split", default="training", help="the split of ROOT to use (default: training)")
    c.add_argument("--out", default=None, metavar="BASE_PATH",
                   help="where the new version goes (default: the model's base path)")
    c.add_argument("--version", type=int, default=None, metavar="N",
                   help="its number (default: the next free one; never overwritten)")
    c.add_argument("--level", type=float, default=0.9, help="nominal coverage (default 0.9)")
    c.set_defaults(func=_calibrate)


def _fail(msg: str) -> int:
    print(f"seg4reg evaluate: error: {msg}", file=sys.stderr)
    return 2


def _check_paths(args) -> str | None:
    if args.run is not None:
        if not fileio.isdir(args.run):
            return f"--run: run directory not found: {args.run}"
        for name in ("config.yaml", "model.keras"):
            if not fileio.isfile(os.path.join(args.run, name)):
                return f"--run: {os.path.join(args.run, name)} not found (expected a run directory of `seg4reg train`)"
        from seg4reg_tf.training.run import RunStateError, require_finished

        try:
            require_finished(args.run, allow_unfinished=args.allow_unfinished)
        except RunStateError as err:
            return f"--run: {err}"
    if args.model is not None and args.allow_unfinished:
        return "--allow-unfinished: applies to --run only"
    if args.model is not None and args.tta is not None:
        return "--tta: applies to --run only (an exported model has its test-time augmentation in the graph)"
    if args.model is not None and not fileio.isdir(args.model):
        return f"--model: SavedModel path not found: {args.model}"
    if not fileio.isdir(args.data):
        return f"--data: dataset root not found: {args.data}"
    if args.batch_size < 1:
        return f"--batch-size: expected a positive int, got {args.batch_size}"
    if args.limit is not None and args.limit < 1:
        return f"--limit: expected a positive int, got {args.limit}"
    if args.max_missing < 0:
        return f"--max-missing: expected an int >= 0, got {args.max_missing}"
    return None


def run_evaluate(args: argparse.Namespace) -> int:
    problem = _check_paths(args)
    if problem:
        return _fail(problem)
    try:
        from seg4reg_tf.data import aasce
        from seg4reg_tf.evaluation.evaluate import evaluate_run, evaluate_saved_model, resolve_saved_model_dir

        if args.model is not None:
            resolve_saved_model_dir(args.model)  # fail before reading the data
        records = aasce.load_split(args.data, args.split)
        if args.val:
            records = aasce.train_val_split(records)[1]
        if args.limit:
            records = records[: args.limit]
        if not records:
            return _fail(f"--split {args.split}: no images{' in the validation subset' if args.val else ''}")
        extra = {"data": fileio.absolute(args.data), "split": args.split + (" (val)" if args.val else "")}
        kw = dict(batch_size=args.batch_size, max_missing=args.max_missing, fitted_corners=args.fitted_corners,
                  make_plots=not args.no_plots, extra=extra)
        if args.run is not None:
            report = evaluate_run(args.run, records, args.out, tta=args.tta,
                                  allow_unfinished=args.allow_unfinished, **kw)
        else:
            report = evaluate_saved_model(args.model, records, args.out, **kw)
    except (FileNotFoundError, ValueError, OSError, KeyError) as err:
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        return _fail(str(msg))

    def fmt(v, unit=""):
        return "n/a" if v is None else f"{v:.3f}{unit}"

    print(f"evaluated {report['n_images']} images, head {report['head']!r}")
    print(f"SMAPE {fmt(report['smape'], '%')}  MAE PT/MT/TL {fmt(report['mae_pt'])}/{fmt(report['mae_mt'])}/"
          f"{fmt(report['mae_tl'])} deg  Dice {fmt(report['dice_mean'])}")
    fitted = report["heads"].get("fitted")
    if fitted is not None:
        print(f"fitted vertebrae: SMAPE {fmt(fitted['smape'], '%')} on {fitted['n']} images "
              f"(failed {100 * report['fitted_failed_fraction']:.1f}%)")
    for name, m in (report.get("intervals") or {}).items():
        if m["n"]:
            print(f"{name} interval: coverage {100 * m['coverage']:.1f}% (n={m['n']}, {m['n_without']} without: "
                  f"not measurable), mean width {m['mean_width']:.1f} deg")
    print(f"report: {os.path.join(args.out, 'report.json')}")
    return 0


def _calibrate(args) -> int:
    from seg4reg_tf.data import aasce
    from seg4reg_tf.evaluation.calibrate import MIN_FILMS, CalibrationError, calibrate
    from seg4reg_tf.evaluation.evaluate import resolve_saved_model_dir

    if args.version is not None and args.version < 1:
        print(f"calibrate: --version: expected a positive integer, got {args.version}", file=sys.stderr)
        return 2
    if not 0.5 <= args.level < 1.0:
        print(f"calibrate: --level: expected a coverage in [0.5, 1), got {args.level}", file=sys.stderr)
        return 2
    try:
        version_dir = resolve_saved_model_dir(args.model)
        records = aasce.load_split(args.data, args.split)
        out_base = args.out or os.path.dirname(os.path.normpath(version_dir))
        result = calibrate(version_dir, records, out_base, args.version, level=args.level,
                           source=f"{args.data} split {args.split}")
    except CalibrationError as err:
        print(f"calibrate: {err}; label more films (at least {MIN_FILMS} measurable) and run it again",
              file=sys.stderr)
        return 1
    except (OSError, ValueError) as err:
        print(f"calibrate: {err}", file=sys.stderr)
        return 1
    print(f"{result.n_measurable} of {result.n_films} labelled films measurable")
    if result.before is not None:
        print(f"current intervals ({version_dir}) on them: {result.before}")
    else:
        print(f"current intervals: none ({version_dir} has no cobb_angles_lower / upper)")
    print(f"refitted (q = {', '.join(f'{q:.2f}' for q in result.intervals.q)}), cross-fitted on these films: "
          f"{result.after}")
    print(f"largest change of an angle output: {result.max_change_deg:g} deg (the same network)")
    print(result.version_dir)
    return 0
