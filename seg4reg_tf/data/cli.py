"""`seg4reg data check|synth|convert`: thin wrappers over seg4reg_tf.data."""
from __future__ import annotations

import argparse
import sys


def register(subparsers) -> None:
    data = subparsers.add_parser("data", help="dataset tools: check, synth, convert")
    sub = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    p = sub.add_parser("check", help="read an AASCE-layout split and report counts, sizes and label quirks")
    p.add_argument("root", help="dataset root holding data/<split> and labels/<split>")
    p.add_argument("--split", default="training", help="split name (default: training)")
    p.add_argument("--headers-only", action="store_true", help="read image headers only (no full decode)")
    p.add_argument("--verbose", "-v", action="store_true", help="list every quirk finding")
    p.set_defaults(func=_check)

    p = sub.add_parser("synth", help="write a synthetic dataset in the AASCE layout")
    p.add_argument("out", help="output root")
    p.add_argument("--n-train", type=int, default=64, help="images in split 'training' (default 64)")
    p.add_argument("--n-test", type=int, default=16, help="images in split 'test' (default 16)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--min-height", type=int, default=900, help="smallest image height, px (default 900)")
    p.add_argument("--max-height", type=int, default=1300, help="largest image height, px (default 1300)")
    p.set_defaults(func=_synth)

    p = sub.add_parser("convert", help="convert an AASCE-layout split into TFRecord shards")
    p.add_argument("root", help="dataset root holding data/<split> and labels/<split>")
    p.add_argument("out", help="output directory for the shards")
    p.add_argument("--split", default="training", help="split name (default: training)")
    p.add_argument("--shards", type=int, default=4, help="number of shards (default 4)")
    p.set_defaults(func=_convert)


def _error(msg: str) -> int:
    print(f"seg4reg data: error: {msg}", file=sys.stderr)
    return 2


def format_report(report: dict, verbose: bool = False) -> str:
    """Readable text of a `check_split` report."""
    c = report["quirk_counts"]
    lines = [
        f"split {report['split']!r} at {report['root']}",
        f"  images:              {report['count']}",
        f"  height range:        {report['height_range'][0]}-{report['height_range'][1]} px",
        f"  width range:         {report['width_range'][0]}-{report['width_range'][1]} px",
        f"  official Cobb vs angles.csv: max |diff| {report['max_angle_error']:.4f} deg"
        f" ({report['angle_error_file']})",
        f"  .mat vs landmarks.csv: max |diff| {report['max_landmark_difference']:.2e} (normalised);"
        f" beyond 5-digit rounding {report['max_landmark_discrepancy']:.2e}",
        f"  label quirks (kept unchanged): {len(report['quirks'])} files;"
        f" swapped corners {c['swapped']} (left/right {c['swapped_lr']}, top/bottom {c['swapped_tb']}),"
        f" centres out of order {c['order']}, points outside the image {c['outside']}",
    ]
    for name, found in report["quirks"].items():
        if verbose:
            lines += [f"    {name}:"] + [f"      - {f}" for f in found]
        else:
            more = f" (+{len(found) - 1} more)" if len(found) > 1 else ""
            lines.append(f"    {name}: {found[0]}{more}")
    return "\n".join(lines)


def _check(args: argparse.Namespace) -> int:
    import warnings

    from seg4reg_tf.data.aasce import AasceFormatError, check_split

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            report = check_split(args.root, args.split, check_images=not args.headers_only)
    except AasceFormatError as err:
        return _error(str(err))
    print(format_report(report, args.verbose))
    return 0


def _synth(args: argparse.Namespace) -> int:
    from seg4reg_tf.data.synth import write_synthetic_dataset

    try:
        write_synthetic_dataset(args.out, args.n_train, args.n_test, args.seed,
                                height_range=(args.min_height, args.max_height))
    except (ValueError, OSError) as err:
        return _error(str(err))
    print(f"wrote {args.n_train} training and {args.n_test} test images to {args.out}")
    return 0


def _convert(args: argparse.Namespace) -> int:
    from seg4reg_tf.data.aasce import AasceFormatError

    if args.shards < 1:
        return _error(f"--shards: expected a positive int, got {args.shards}")
    from seg4reg_tf.data.tfrecords import convert_split  # lazy: TensorFlow import

    try:
        paths = convert_split(args.root, args.out, args.split, args.shards)
    except AasceFormatError as err:
        return _error(str(err))
    print(f"wrote {len(paths)} shards to {args.out}")
    for path in paths:
        print(f"  {path}")
    return 0
