"""Out-of-fold outputs of every labelled X-ray: one recipe trained per fold from the ImageNet encoders.

    python benchmarks/out_of_fold.py --config seg4reg_plus_lite0_oof --data /path/to/boostnet_labeldata \
        --runs runs/oof --out benchmarks/results/out_of_fold.csv [--folds 4 0 1 2 3] [--set train.epochs=2 ...]

Fold k holds out the films with index % 5 == k (`train.val_fold`; fold 4 is the fixed validation split).
For each fold of --folds not yet in --out, in the order given: `seg4reg train` of the config with
train.val_fold=k into RUNS/fold_k (a stopped training resumes from its backup when the command is run
again), its model.keras (best epoch on the held-out fifth, as every recipe selects) exported to
RUNS/fold_k_serving/1, the held-out films through that `serving_default` (image bytes in, as a user
calls it), and their rows appended to --out (`evaluation.out_of_fold`: model outputs only, a fold at a
time, atomically). Then the table of every fold in --out: SMAPE per head and per severity of the true
main curve, out of fold. A config with train.init_weights is refused: a network that saw the held-out
films (versions 3 and 6 saw all but fold 4) makes no out-of-fold error.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

HEADS = {"fused answer (cobb_angles)": "cobb_angles", "geometry head": "cobb_angles_geometry",
         "segmentation head": "cobb_angles_segmentation", "image head": "cobb_angles_image"}


def run_fold(cfg, data: str, records: list, fold: int, runs: str, out: str) -> None:
    """Train (or resume) fold `fold`, export it, and append its held-out films' outputs to `out`."""
    import dataclasses

    from seg4reg_tf.data import aasce
    from seg4reg_tf.evaluation.evaluate import saved_model_outputs
    from seg4reg_tf.evaluation.out_of_fold import OUTPUTS, append_rows, fold_rows
    from seg4reg_tf.export.savedmodel import export_run
    from seg4reg_tf.training.run import run_state
    from seg4reg_tf.training.train import train

    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, val_fold=fold))
    run_dir = os.path.join(runs, f"fold_{fold}")
    if run_state(run_dir).status != "finished":
        print(f"fold {fold}: training {run_dir}", file=sys.stderr)
        train(cfg, data, run_dir)
    serving = os.path.join(runs, f"fold_{fold}_serving")
    if not os.path.isdir(os.path.join(serving, "1")):
        export_run(run_dir, serving, 1)
    held_out = aasce.train_val_split(records, fold)[1]
    position = {id(r): i for i, r in enumerate(records)}  # the split's rule stays train_val_split's alone
    indices = [position[id(r)] for r in held_out]
    outputs = saved_model_outputs(os.path.join(serving, "1"), held_out,
                                  [k for k in OUTPUTS if k != "upright_margin"], optional=["upright_margin"],
                                  desc=f"fold {fold} held out")
    append_rows(out, fold_rows(outputs, indices, [os.path.basename(r.image_path) for r in held_out], fold))
    print(f"fold {fold}: {len(held_out)} films appended to {out}", file=sys.stderr)


def table(out: str, records: list) -> str:
    """Markdown: per head, SMAPE (MAE PT / MT / TL) of the out-of-fold films in `out`, overall, per fold
    and per severity band of the true main curve."""
    from seg4reg_tf.evaluation.out_of_fold import read_out_of_fold
    from seg4reg_tf.evaluation.report import head_metrics, severity_metrics

    keys, outputs = read_out_of_fold(out)
    truth = np.stack([np.asarray(records[i].angles, np.float64) for i in keys["index"]])
    folds = sorted(set(keys["fold"].tolist()))
    bands = list(severity_metrics(truth, truth))
    lines = [f"out of fold: {len(truth)} films, folds {', '.join(map(str, folds))}", "",
             "| SMAPE % | all (MAE PT / MT / TL deg) | " + " | ".join(f"fold {k}" for k in folds) + " | "
             + " | ".join(f"PT {b} (n)" for b in bands) + " |",
             "|---|---|" + "---|" * (len(folds) + len(bands))]
    for name, key in HEADS.items():
        pred = outputs[key]
        m = head_metrics(pred, truth)
        per_fold = [head_metrics(pred[keys["fold"] == k], truth[keys["fold"] == k])["smape"] for k in folds]
        sev = severity_metrics(pred, truth)
        mae = " / ".join(f"{m[k]:.2f}" for k in ("mae_pt", "mae_mt", "mae_tl"))
        lines.append(f"| {name} | {m['smape']:.2f} ({mae}) | "
                     + " | ".join(f"{v:.2f}" for v in per_fold) + " | "
                     + " | ".join("-" if sev[b]["smape"] is None else f"{sev[b]['smape']:.2f} ({sev[b]['n']})"
                                  for b in bands) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="a config file or a shipped config's name")
    p.add_argument("--data", required=True, help="AASCE root (split 'training')")
    p.add_argument("--runs", required=True, help="directory of the fold runs (RUNS/fold_k, RUNS/fold_k_serving)")
    p.add_argument("--out", required=True, help="the out-of-fold CSV (created, or grown by the folds it lacks)")
    p.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="folds to run, in this order")
    p.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)

    from seg4reg_tf.data import aasce
    from seg4reg_tf.evaluation.out_of_fold import folds_in
    from seg4reg_tf.shipped_configs import resolve_config
    from seg4reg_tf.training.config import load_config

    bad = [k for k in args.folds if k not in range(aasce.FOLDS)]
    if bad:
        p.error(f"--folds: expected ints in 0..{aasce.FOLDS - 1}, got {bad}")
    cfg = load_config(resolve_config(args.config), args.overrides)
    if cfg.train.init_weights:
        p.error(f"--config: train.init_weights is {cfg.train.init_weights!r}; out-of-fold models train from the "
                "ImageNet encoders (a network that saw the held-out films makes no out-of-fold error)")
    if cfg.train.fit_on != "train":
        p.error("--config: train.fit_on must be 'train' (each fold holds out a fifth)")
    records = aasce.load_split(args.data, "training")
    done = folds_in(args.out)
    for fold in args.folds:
        if fold in done:
            print(f"fold {fold}: already in {args.out}, skipped", file=sys.stderr)
            continue
        run_fold(cfg, args.data, records, fold, args.runs, args.out)
    print(table(args.out, records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
