"""Paper-style ablation: variants x seeds, same budget, evaluated on the fixed validation split.

    python benchmarks/ablation.py --data /path/to/boostnet_labeldata --out runs/ablation \
        [--variants reg_only seg4reg ...] [--seeds 0 1 2] [--epochs 50] [--set data.image_size=[256,128] ...]

For every variant (configs/<variant>.yaml) and seed k it trains `training.train.train` into
OUT/<variant>/seed<k> (train.seed=k, plus --epochs / --set overrides, identical for all variants),
evaluates model.keras with `evaluation.evaluate_run` on the fixed validation split (index % 5 == 4 of
split "training"; the numbers of `seg4reg evaluate --run RUN --split training --val`) into
OUT/<variant>/seed<k>/eval/report.json, and writes:
- OUT/ablation.csv: one row per run (variant, seed, val SMAPE, per-angle MAE, Dice, seg-derived
  angle SMAPE, best epoch, train wall time),
- OUT/ablation.md: per variant mean ± sd over seeds.
Runs already complete (train_summary.json and eval/report.json present) are skipped, an interrupted
training resumes from its backup/, so re-running the same command continues the ablation. Finished
runs of other seeds already in OUT (an earlier call with other --seeds, same budget) join the table.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time

from seg4reg_tf.config_machinery import add_override_argument
from seg4reg_tf.shipped_configs import config_dir

VARIANTS = ("reg_only", "seg4reg", "seg4reg_plus", "seg4reg_plus_no_att", "seg4reg_plus_no_gate",
            "seg4reg_plus_no_tri")
COLUMNS = ("variant", "seed", "val_smape", "mae_pt", "mae_mt", "mae_tl", "dice", "fitted_smape",
           "attention_in_spine", "attention_area", "best_epoch", "epochs", "train_wall_s", "eval_wall_s")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="AASCE-format root (split 'training' is split train/val)")
    p.add_argument("--out", default=os.path.join("runs", "ablation"), help="output directory (resumed)")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), help="config names in --configs")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="train.seed values")
    p.add_argument("--epochs", type=int, default=None, help="train.epochs for every run (default: the configs')")
    add_override_argument(p, "config override applied to every run")
    p.add_argument("--configs", default=config_dir(),
                   help="directory of <variant>.yaml (default: the package's shipped configs, i.e. configs/)")
    p.add_argument("--batch-size", type=int, default=8, help="evaluation batch size")
    p.add_argument("--plots", action="store_true", help="also write the evaluation plots")
    p.add_argument("--verbose", type=int, choices=(0, 1, 2), default=2, help="Keras fit verbosity")
    return p.parse_args(argv)


def run_config(args, variant: str, seed: int):
    """The experiment config of one run (raises ConfigError naming the key)."""
    from seg4reg_tf.training.config import load_config

    path = os.path.join(args.configs, f"{variant}.yaml")
    if not os.path.isfile(path):
        raise ValueError(f"--variants {variant}: no config {path}")
    overrides = list(args.overrides) + ([f"train.epochs={args.epochs}"] if args.epochs else []) + [
        f"train.seed={seed}"]
    return load_config(path, overrides)


def _same_config(cfg, run_dir: str) -> bool:
    from seg4reg_tf.training.config import load_config, to_dict

    path = os.path.join(run_dir, "config.yaml")
    return not os.path.isfile(path) or to_dict(load_config(path)) == to_dict(cfg)


def run_one(args, variant: str, seed: int, val_records) -> dict:
    """Train (unless done) and evaluate (unless done) one run; returns its CSV row."""
    from seg4reg_tf.evaluation.evaluate import evaluate_run
    from seg4reg_tf.training.train import train

    cfg = run_config(args, variant, seed)
    run_dir = os.path.join(args.out, variant, f"seed{seed}")
    if not _same_config(cfg, run_dir):
        raise ValueError(f"{run_dir}: was trained with a different config (its config.yaml); "
                         "use another --out or the same --epochs/--set")
    summary_path = os.path.join(run_dir, "train_summary.json")
    report_path = os.path.join(run_dir, "eval", "report.json")
    trained = os.path.isfile(summary_path) and not os.path.isdir(os.path.join(run_dir, "backup"))
    if trained:
        print(f"[ablation] {variant} seed {seed}: trained already ({run_dir})", flush=True)
    else:
        print(f"[ablation] {variant} seed {seed}: training {cfg.train.epochs} epochs into {run_dir}", flush=True)
        train(cfg, args.data, run_dir, verbose=args.verbose)
        if os.path.isfile(report_path):
            os.remove(report_path)  # the model changed: evaluate again
    summary = _read_json(summary_path)
    if os.path.isfile(report_path):
        report = _read_json(report_path)
        eval_s = report.get("eval_wall_s")
    else:
        t0 = time.perf_counter()
        report = evaluate_run(run_dir, val_records, os.path.dirname(report_path), batch_size=args.batch_size,
                              make_plots=args.plots, extra={"data": os.path.abspath(args.data),
                                                            "split": "training (val)"})
        eval_s = round(time.perf_counter() - t0, 2)
        report["eval_wall_s"] = eval_s
        from seg4reg_tf.evaluation.report import write_report

        write_report(report, report_path)
    return _row(variant, seed, summary, report, eval_s)


def _row(variant: str, seed: int, summary: dict, report: dict, eval_s) -> dict:
    seg = (report.get("heads") or {}).get("fitted") or {}
    row = {"variant": variant, "seed": seed, "val_smape": report.get("smape"), "mae_pt": report.get("mae_pt"),
           "mae_mt": report.get("mae_mt"), "mae_tl": report.get("mae_tl"), "dice": report.get("dice_mean"),
           "fitted_smape": seg.get("smape"), "attention_in_spine": report.get("attention_in_spine"),
           "attention_area": report.get("attention_area"), "best_epoch": summary.get("best_epoch"),
           "epochs": summary.get("epochs"), "train_wall_s": summary.get("wall_time_s"), "eval_wall_s": eval_s}
    print(f"[ablation] {variant} seed {seed}: val SMAPE {_num(row['val_smape'])}, Dice {_num(row['dice'])}",
          flush=True)
    return row


def earlier_rows(args, variant: str) -> list[dict]:
    """Rows of finished, evaluated runs OUT/<variant>/seed<k> with k not in --seeds (an earlier call of
    this script with other seeds); a run trained with another budget raises ValueError naming it."""
    rows = []
    vdir = os.path.join(args.out, variant)
    names = sorted(os.listdir(vdir)) if os.path.isdir(vdir) else []
    for name in names:
        if not (name.startswith("seed") and name[4:].isdigit()) or int(name[4:]) in args.seeds:
            continue
        seed, run_dir = int(name[4:]), os.path.join(vdir, name)
        paths = [os.path.join(run_dir, "train_summary.json"), os.path.join(run_dir, "eval", "report.json")]
        if os.path.isdir(os.path.join(run_dir, "backup")) or not all(os.path.isfile(p) for p in paths):
            continue  # unfinished: the call that started it resumes it
        if not _same_config(run_config(args, variant, seed), run_dir):
            raise ValueError(f"{run_dir}: was trained with a different config (its config.yaml); "
                             "use another --out or the same --epochs/--set")
        summary, report = (_read_json(p) for p in paths)
        rows.append(_row(variant, seed, summary, report, report.get("eval_wall_s")))
    return rows


def _read_json(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def _num(v, digits: int = 2) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{digits}f}"


def _stats(values):
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return None, None
    mean = sum(vals) / len(vals)
    sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else None
    return mean, sd


def _pm(values, digits: int = 2) -> str:
    mean, sd = _stats(values)
    if mean is None:
        return "n/a"
    return f"{mean:.{digits}f}" + (f" ± {sd:.{digits}f}" if sd is not None else "")


def summarize(rows: list[dict], variants, args) -> str:
    """The markdown table: per variant mean ± sd (sample sd, n-1) over seeds."""
    lines = [
        "# Ablation (fixed validation split of 'training', index % 5 == 4)",
        "",
        f"data: `{os.path.basename(os.path.abspath(args.data))}`; seeds per run in ablation.csv; epochs: "
        f"{args.epochs or 'as in each config'}; overrides: {' '.join(args.overrides) or 'none'}",
        "",
        "| variant | val SMAPE (%) | MAE PT (°) | MAE MT (°) | MAE TL (°) | Dice | fitted vertebrae SMAPE (%) "
        "| attention in spine (band area) | n seeds | train wall time (min, mean) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for v in variants:
        rs = [r for r in rows if r["variant"] == v]
        if not rs:
            continue
        wall, _ = _stats([r["train_wall_s"] for r in rs])
        lines.append(f"| {v} | {_pm([r['val_smape'] for r in rs])} | {_pm([r['mae_pt'] for r in rs])} | "
                     f"{_pm([r['mae_mt'] for r in rs])} | {_pm([r['mae_tl'] for r in rs])} | "
                     f"{_pm([r['dice'] for r in rs], 3)} | {_pm([r['fitted_smape'] for r in rs])} | "
                     f"{_pm([r.get('attention_in_spine') for r in rs], 3)} "
                     f"({_num(_stats([r.get('attention_area') for r in rs])[0], 3)}) | {len(rs)} | "
                     f"{_num(wall / 60 if wall is not None else None, 1)} |")
    lines += ["", "mean ± sample sd over seeds; reported head per config (`model.head`); Dice and fitted-vertebrae "
                  "SMAPE n/a for reg_only (no segmentation)."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = parse_args(argv)
    if not os.path.isdir(args.data):
        print(f"ablation: --data {args.data}: not a directory", file=sys.stderr)
        return 2
    if args.epochs is not None and args.epochs < 1:
        print(f"ablation: --epochs: expected a positive int, got {args.epochs}", file=sys.stderr)
        return 2
    try:  # check every config before training anything
        for v in args.variants:
            for s in args.seeds:
                run_config(args, v, s)
    except ValueError as err:
        print(f"ablation: config error: {err}", file=sys.stderr)
        return 2
    from seg4reg_tf.data.sources import fixed_split

    _, val_records = fixed_split(args.data)
    os.makedirs(args.out, exist_ok=True)
    rows = []
    for v in args.variants:
        try:
            for s in args.seeds:
                rows.append(run_one(args, v, s, val_records))
            rows.extend(earlier_rows(args, v))
        except ValueError as err:
            print(f"ablation: {err}", file=sys.stderr)
            return 2
    with open(os.path.join(args.out, "ablation.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)
    md = summarize(rows, args.variants, args)
    with open(os.path.join(args.out, "ablation.md"), "w", encoding="utf-8") as f:
        f.write(md)
    print(md)
    print(f"wrote {os.path.join(args.out, 'ablation.md')} and ablation.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
