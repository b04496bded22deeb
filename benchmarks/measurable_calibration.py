"""Calibrate `measurable.THRESHOLDS`: the criteria on real validation X-rays and on images that are not.

    python benchmarks/measurable_calibration.py --model serving/models/seg4reg/4 \
        --data /path/to/boostnet_labeldata [--json OUT.json]

Prints, per group (the fixed validation split of `training`, and the same X-rays rotated 180 deg and
mirrored top to bottom; blank, noise and non-spine images made here or taken from matplotlib's sample data),
the percentiles of every criterion and the fraction
judged not measurable. Works with a model exported before the score existed (computes it here).
Writes nothing unless --json is given (keep that file out of the repository: it describes real data).
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import sys

import cv2
import numpy as np


def _png(a: np.ndarray) -> bytes:
    return cv2.imencode(".png", a)[1].tobytes()


def _jpeg(a: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", a, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()


def synthetic_images(seed: int = 0) -> dict[str, list[tuple[str, bytes]]]:
    """{"blank": [...], "noise": [...], "non_spine": [...]} of (name, JPEG/PNG bytes), 1000 x 500 and others."""
    rng = np.random.default_rng(seed)
    h, w = 1000, 500
    blank = [("black.jpg", _jpeg(np.zeros((h, w), np.uint8))), ("white.png", _png(np.full((h, w), 255, np.uint8))),
             ("grey.jpg", _jpeg(np.full((h, w), 128, np.uint8))),
             ("grey16.png", _png(np.full((h, w), 30000, np.uint16)))]
    noise = [(f"uniform{i}.png", _png(rng.integers(0, 256, (h, w), dtype=np.uint8))) for i in range(3)]
    noise += [(f"gauss{i}.jpg", _jpeg(np.clip(rng.normal(128, 40, (h, w)), 0, 255).astype(np.uint8)))
              for i in range(3)]
    noise += [("saltpepper.png", _png((rng.random((h, w)) > 0.5).astype(np.uint8) * 255))]
    yy, xx = np.mgrid[0:h, 0:w]
    shapes = [("gradient.png", _png((yy * 255 // h).astype(np.uint8))),
              ("checker.png", _png((((yy // 50) + (xx // 50)) % 2 * 255).astype(np.uint8))),
              ("circles.png", _png((127 + 127 * np.sin(np.hypot(yy - h / 2, xx - w / 2) / 15)).astype(np.uint8)))]
    text = np.zeros((h, w), np.uint8)
    for i in range(20):
        cv2.putText(text, "PATIENT REPORT 2019", (10, 40 + 48 * i), cv2.FONT_HERSHEY_SIMPLEX, 1.0, 255, 2)
    shapes.append(("text.png", _png(text)))
    non_spine = shapes + _matplotlib_samples()
    return {"blank": blank, "noise": noise, "non_spine": non_spine}


def _matplotlib_samples() -> list[tuple[str, bytes]]:
    try:
        import matplotlib
    except ImportError:
        return []
    root = os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "sample_data")
    out = []
    for name in ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png", "logo2.png"):
        path = os.path.join(root, name)
        if os.path.isfile(path):
            out.append((name, open(path, "rb").read()))
    path = os.path.join(root, "s1045.ima.gz")  # a 256 x 256 16-bit MRI slice (head)
    if os.path.isfile(path):
        mri = np.frombuffer(gzip.open(path).read(), np.uint16).reshape(256, 256)
        out.append(("mri_s1045.png", _png((mri.astype(np.float64) / max(mri.max(), 1) * 65535).astype(np.uint16))))
    for name, key in (("jacksboro_fault_dem.npz", "elevation"), ("topobathy.npz", "topo")):
        path = os.path.join(root, name)
        if os.path.isfile(path):
            z = np.load(path)[key].astype(np.float64)
            z = (z - z.min()) / max(z.max() - z.min(), 1e-9)
            out.append((name.replace(".npz", ".png"), _png((z * 255).astype(np.uint8))))
    return out


def turned_images(images: list[tuple[str, bytes]]) -> dict[str, list[tuple[str, bytes]]]:
    """{"rotated_180": [...], "upside_down": [...]}: the X-rays turned (a film put in the wrong way round),
    re-encoded as 8-bit PNG."""
    out = {"rotated_180": [], "upside_down": []}
    for name, data in images:
        a = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
        out["rotated_180"].append((name, _png(a[::-1, ::-1].copy())))
        out["upside_down"].append((name, _png(a[::-1].copy())))
    return out


def measure(predict, images: list[tuple[str, bytes]]) -> list[dict]:
    """Criteria values, score, reason per image: `predict([bytes]) -> outputs` of `serving_default`."""
    import tensorflow as tf

    from seg4reg_tf.data.preprocess import decode_image
    from seg4reg_tf.export import measurable

    rows = []
    for name, data in images:
        outputs = predict([data])
        if "measurable_score" in outputs:
            verdict = {k: np.asarray(outputs[k]) for k in measurable.OUTPUTS}
        stats = measurable.statistics_dict(tf.reshape(measurable.image_statistics(decode_image(tf.constant(data))),
                                                       [1, 2]))
        feats = {k: float(np.asarray(v)[0]) for k, v in measurable.features(stats, outputs).items()}
        if "measurable_score" not in outputs:
            verdict = {k: np.asarray(v) for k, v in measurable.assess(stats, outputs).items()}
        reason = verdict["measurable_reason"][0]
        rows.append({"name": name, **feats, "score": float(verdict["measurable_score"][0]),
                     "reason": reason.decode() if isinstance(reason, bytes) else str(reason)})
    return rows


def summarise(group: str, rows: list[dict]) -> dict:
    keys = [k for k in rows[0] if k not in ("name", "score", "reason")]
    flagged = [r for r in rows if r["score"] < 0.5]
    out = {"group": group, "n": len(rows), "not_measurable": len(flagged),
           "percentiles_0_1_50_99_100": {k: [round(float(np.percentile([r[k] for r in rows], q)), 4)
                                             for q in (0, 1, 50, 99, 100)] for k in keys},
           "flagged": [(r["name"], r["reason"]) for r in flagged][:20]}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="SavedModel version dir or TF Serving base path")
    p.add_argument("--data", required=True, help="AASCE-format root (its fixed validation split is used)")
    p.add_argument("--json", default=None, help="write the per-image rows here (outside the repository)")
    args = p.parse_args(argv)
    from seg4reg_tf.client.predict import LocalPredictor
    from seg4reg_tf.data import aasce

    predictor = LocalPredictor(args.model)
    val = aasce.train_val_split(aasce.load_split(args.data, "training"))[1]
    groups = {"validation_xrays": [(os.path.basename(r.image_path), open(r.image_path, "rb").read()) for r in val]}
    groups.update(turned_images(groups["validation_xrays"]))
    groups.update(synthetic_images())
    report = {}
    for group, images in groups.items():
        rows = measure(predictor.predict, images)
        report[group] = rows
        print(json.dumps(summarise(group, rows)), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
