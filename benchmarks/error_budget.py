"""Where a trained joint model's angle error comes from, on the fixed validation split.

The regression network R of the joint model, one pass (no test-time augmentation), on three inputs:
the X-ray (the image head R(x)), the predicted spine foreground (the segmentation head R(s_hat)) and
the ground-truth spine mask (R(m): what the segmentation head would score with a perfect segmentation).
SMAPE % and MAE PT/MT/TL in degrees per input.

    python benchmarks/error_budget.py --data ROOT RUN [RUN ...]    (ROOT: an AASCE-format root)
"""
from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

INPUTS = ("image", "segmentation", "true_mask")


def error_budget(model, dataset) -> dict[str, dict]:
    """{input: {"smape": %, "mae": [PT, MT, TL] deg, "n": images}} of R on the X-ray, the predicted
    foreground and the ground-truth mask, over `dataset` ((features, targets) batches with "angles"
    [B, 3] and "labels" [B, H, W] 0..17). `model`: a variant with a segmentation head ("image" only
    where it also has the image head)."""
    import keras
    import numpy as np

    from seg4reg_tf.geometry.smape import angle_mae, smape

    preds = {k: [] for k in INPUTS}
    true = []
    for x, y in dataset:
        out = model(x, training=False)
        mask = keras.ops.expand_dims(keras.ops.cast(y["labels"] > 0, "float32"), -1)
        if "cobb_angles_image" in out:
            preds["image"].append(np.asarray(out["cobb_angles_image"]))
        preds["segmentation"].append(np.asarray(out["cobb_angles_segmentation"]))
        preds["true_mask"].append(np.asarray(model.regressor(mask, training=False)["angles"]))
        true.append(np.asarray(y["angles"]))
    t = np.concatenate(true)
    return {k: {"smape": smape(np.concatenate(v), t), "mae": angle_mae(np.concatenate(v), t).tolist(),
                "n": len(t)} for k, v in preds.items() if v}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories written by `seg4reg train`")
    p.add_argument("--data", required=True, help="AASCE-format root (its fixed validation split is used)")
    p.add_argument("--batch-size", type=int, default=8)
    args = p.parse_args(argv)

    from seg4reg_tf.data.pipeline import build_dataset
    from seg4reg_tf.data.sources import fixed_split
    from seg4reg_tf.training.run import load_run

    val = fixed_split(args.data)[1]
    print("| run | input of R | SMAPE % | MAE PT / MT / TL (deg) |")
    print("|---|---|---|---|")
    for run in args.runs:
        cfg, model = load_run(run, tta="none")
        if not cfg.model.has_segmentation:
            print(f"{run}: model.variant {cfg.model.variant!r} has no segmentation head", file=sys.stderr)
            return 2
        ds = build_dataset(None, cfg.data, training=False, records=val, batch_size=args.batch_size)
        for name, r in error_budget(model, ds).items():
            mae = " / ".join(f"{v:.2f}" for v in r["mae"])
            print(f"| {os.path.basename(os.path.normpath(run))} | {name} | {r['smape']:.2f} | {mae} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
