"""The same film saved another way: how far each exported version's answer moves, against its interval.

    python benchmarks/resave_stability.py serving/models/seg4reg/7 [VERSION ...] --data AASCE_ROOT [--limit N]

Each validation film of the fixed split (fold 4; `--limit` the first N) is decoded to grey and saved again as
a PACS export or a phone would: lossless 16-bit PNG, JPEG at quality 90 / 70 / 50 / 30, 6 and 5 bits, added
noise (sd 3 grey levels), and half the resolution (JPEG 90). `serving_default` answers each; the table gives,
per way, the largest of the three angles' change |answer - answer on the original file| (deg) per film:
median, 95th percentile and max, and that change as a fraction of the original's interval half-width
(`cobb_angles_upper - cobb_angles_lower`) / 2 of the same angle (median and 95th percentile).
"""
from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402


def _png(gray) -> bytes:
    return cv2.imencode(".png", gray)[1].tobytes()


def _jpeg(gray, quality: int) -> bytes:
    return cv2.imencode(".jpg", gray, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()


def _bits(gray, bits: int) -> bytes:
    step = 2 ** (8 - bits)
    return _png(((gray // step) * step + step // 2).astype(np.uint8))


def _noise(gray, sd: float, seed: int = 0) -> bytes:
    noisy = gray + np.random.default_rng(seed).normal(0.0, sd, gray.shape)
    return _png(np.clip(np.round(noisy), 0, 255).astype(np.uint8))


def _half(gray) -> bytes:
    h, w = gray.shape
    return _jpeg(cv2.resize(gray, (w // 2, h // 2), interpolation=cv2.INTER_AREA), 90)


WAYS = {
    "PNG 16-bit (lossless)": lambda g: _png(g.astype(np.uint16) * 257),
    "JPEG 90": lambda g: _jpeg(g, 90),
    "JPEG 70": lambda g: _jpeg(g, 70),
    "JPEG 50": lambda g: _jpeg(g, 50),
    "JPEG 30": lambda g: _jpeg(g, 30),
    "6 bits": lambda g: _bits(g, 6),
    "5 bits": lambda g: _bits(g, 5),
    "noise sd 3": lambda g: _noise(g, 3.0),
    "half resolution, JPEG 90": _half,
}


def answers(fn, films: list[bytes], batch: int = 8) -> dict[str, np.ndarray]:
    """{output: [N, ...]} of the angle outputs of `fn` (`evaluation.evaluate.saved_model_predict_fn`: encoded
    images -> numpy outputs) on the films, `batch` at a time."""
    parts = []
    for i in range(0, len(films), batch):
        out = fn(films[i:i + batch])
        parts.append({k: v for k, v in out.items() if k.startswith("cobb_angles")})
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def movement(base: dict, other: dict) -> tuple[np.ndarray, np.ndarray]:
    """(largest |change| of the three reported angles per film [N] deg, that change over the same angle's
    half-width [N], NaN without intervals)."""
    change = np.abs(other["cobb_angles"] - base["cobb_angles"])
    worst = np.argmax(change, axis=1)
    rows = np.arange(len(change))
    if "cobb_angles_upper" in base:
        half = (base["cobb_angles_upper"] - base["cobb_angles_lower"]) / 2
        ratio = change[rows, worst] / half[rows, worst]
    else:
        ratio = np.full(len(change), np.nan)
    return change[rows, worst], ratio


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("versions", nargs="+", help="SavedModel version directories (BASE/N)")
    p.add_argument("--data", required=True, help="AASCE root: the fixed split's validation films")
    p.add_argument("--limit", type=int, default=None, help="the first N validation films only")
    args = p.parse_args(argv)

    from serving_latency import header
    from tqdm import tqdm

    from seg4reg_tf.data.sources import fixed_split
    from seg4reg_tf.evaluation.evaluate import saved_model_predict_fn

    _, val = fixed_split(args.data)
    val = val[:args.limit] if args.limit else val
    originals, grays = [], []
    for rec in val:
        with open(rec.image_path, "rb") as f:
            originals.append(f.read())
        grays.append(cv2.imdecode(np.frombuffer(originals[-1], np.uint8), cv2.IMREAD_GRAYSCALE))
    saved = {way: [make(g) for g in tqdm(grays, desc=way, leave=False)] for way, make in WAYS.items()}

    lines = header(args, "The same film saved another way", ", ".join(args.versions),
                   [f"{len(val)} validation films (fold 4) of {args.data}"])
    for version in args.versions:
        fn, _ = saved_model_predict_fn(version)
        base = answers(fn, originals)
        lines += ["", f"{version}: largest change of a reported angle per film (deg), and over that angle's "
                  "interval half-width", "",
                  "| saved as | median | 95th pct | max | / half-width, median | / half-width, 95th pct |",
                  "|---|---|---|---|---|---|"]
        for way in tqdm(WAYS, desc=version):
            change, ratio = movement(base, answers(fn, saved[way]))
            lines.append(f"| {way} | {np.median(change):.2f} | {np.percentile(change, 95):.2f} | {change.max():.2f} | "
                         f"{np.nanmedian(ratio):.2f} | {np.nanpercentile(ratio, 95):.2f} |")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
