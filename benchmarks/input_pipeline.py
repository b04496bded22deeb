"""Training-input throughput of `seg4reg_tf.data.pipeline.build_dataset` (augmentation on).

Measures images/s for the first (cold) epoch, which decodes, letterboxes, applies CLAHE, rasterises
label maps and fills the in-memory cache, and then for N warm batches (cache hits + augmentation).

    python benchmarks/input_pipeline.py                       # synthetic set in a temp dir
    python benchmarks/input_pipeline.py --data /path/to/boostnet_labeldata --split training
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", help="AASCE root (default: generate a synthetic set in a temp dir)")
    p.add_argument("--split", default="training")
    p.add_argument("--size", type=int, nargs=2, default=(512, 256), metavar=("H", "W"))
    p.add_argument("--batches", type=int, default=60, help="warm batches to time")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--synthetic-n", type=int, default=64, help="images in the generated synthetic set")
    p.add_argument("--limit", type=int, default=None, help="use only the first N images of the split")
    p.add_argument("--no-clahe", action="store_true")
    args = p.parse_args(argv)

    from tqdm import tqdm

    from seg4reg_tf.data.aasce import load_split
    from seg4reg_tf.data.config import DataConfig
    from seg4reg_tf.data.pipeline import build_dataset

    tmp = None
    root = args.data
    if root is None:
        from seg4reg_tf.data.synth import write_synthetic_dataset

        tmp = tempfile.TemporaryDirectory(prefix="seg4reg_bench_")
        root = tmp.name
        write_synthetic_dataset(root, args.synthetic_n, 0, 0)
    records = load_split(root, args.split, check_images=False, progress=False)
    if args.limit:
        records = records[: args.limit]
    n = len(records)
    cfg = DataConfig(image_size=tuple(args.size), batch_size=args.batch_size, clahe=not args.no_clahe,
                     shuffle_buffer=max(n, 1), cache=True)
    ds = build_dataset(records, cfg, training=True, repeat=True, seed=0)
    it = iter(ds)
    epoch_batches = math.ceil(n / args.batch_size)  # the shuffle buffer holds a full epoch

    t0 = time.perf_counter()
    seen = 0
    for _ in tqdm(range(epoch_batches), desc="cold epoch", unit="batch"):
        f, _t = next(it)
        seen += int(f["image"].shape[0])
    cold = time.perf_counter() - t0

    t0 = time.perf_counter()
    warm_seen = 0
    for _ in tqdm(range(args.batches), desc="warm", unit="batch"):
        f, _t = next(it)
        warm_seen += int(f["image"].shape[0])
    warm = time.perf_counter() - t0

    print(f"input_pipeline: data={'synthetic' if args.data is None else args.data}:{args.split} images={n} "
          f"size={args.size[0]}x{args.size[1]} batch={args.batch_size} clahe={cfg.clahe} augment=on "
          f"cpus={os.cpu_count()} | cold first epoch {seen / cold:.1f} img/s ({seen} img in {cold:.1f} s) | "
          f"warm {warm_seen / warm:.1f} img/s ({warm_seen} img in {warm:.1f} s)")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
