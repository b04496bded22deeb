"""Bytes -> every output of exported versions on one real image, in-process, one after the other.

    python benchmarks/bytes_to_answer.py --image XRAY.jpg serving/models/seg4reg/3 serving/models/seg4reg/4

Each SavedModel's `serving_default` is called on the image's file bytes, batch 1, with `--threads`
(2) intra- and inter-op threads: `--warmup` (5) calls, then the median and mean of `--calls` (30).
Prints a markdown table with the machine, the date and the command (what BENCHMARKS.md quotes).
"""
from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("versions", nargs="+", help="SavedModel version directories (BASE/N)")
    p.add_argument("--image", required=True, help="an X-ray file (JPEG or PNG) sent as bytes")
    p.add_argument("--calls", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)

    import numpy as np
    import tensorflow as tf
    from serving_latency import header, time_calls

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    with open(args.image, "rb") as f:
        data = tf.constant([f.read()])
    rows = []
    for version in args.versions:
        fn = tf.saved_model.load(version).signatures["serving_default"]
        ms = np.asarray(time_calls(lambda: fn(image_bytes=data), args.calls, warmup=args.warmup)) * 1e3
        rows.append(f"| {version} | {np.median(ms):.1f} | {ms.mean():.1f} |")
    lines = header(args, "Bytes -> every output", ", ".join(args.versions),
                   [f"image: {os.path.basename(args.image)}, batch 1, {args.threads} threads, "
                    f"{args.warmup} warm-up calls, {args.calls} timed"])
    print("\n".join(lines + ["| version | median ms | mean ms |", "|---|---|---|", *rows]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
