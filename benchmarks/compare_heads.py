"""Every head of evaluated models side by side, with the per-severity SMAPE and the geometry/regression mean.

    seg4reg evaluate --run RUN --data ROOT --split training --val --out EVAL    # writes EVAL/cases.csv
    python benchmarks/compare_heads.py EVAL1/cases.csv EVAL2/cases.csv ...

For each cases.csv (one row per image: true and predicted angles of every head): SMAPE and MAE per head,
the element-wise mean of the geometry and the segmentation head (a fusion candidate, computed here,
not exported), and SMAPE by severity of the true main curve (PT < 20, 20-40, 40-60, >= 60 deg).
Prints markdown tables.
"""
from __future__ import annotations

import argparse
import csv
import sys

import numpy as np

from seg4reg_tf.evaluation.report import head_metrics, severity_metrics

ANGLES = ("pt", "mt", "tl")


def read_cases(path: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(true (N, 3), {head: (N, 3)}) from an evaluate cases.csv (empty cells are NaN)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path}: no rows")

    def column(prefix):
        return np.array([[float(r[f"{prefix}_{a}"] or "nan") for a in ANGLES] for r in rows])

    heads = sorted({k.rsplit("_", 1)[0] for k in rows[0] if k.endswith("_pt") and not k.startswith("true")})
    return column("true"), {h: column(h) for h in heads}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("cases", nargs="+", help="cases.csv files of `seg4reg evaluate`")
    args = p.parse_args(argv)
    print("| cases | head | n | SMAPE % | MAE PT / MT / TL (deg) |")
    print("|---|---|---|---|---|")
    severity_rows = []
    for path in args.cases:
        true, heads = read_cases(path)
        if "geometry" in heads and "segmentation" in heads:
            heads["mean(geometry, segmentation)"] = 0.5 * (heads["geometry"] + heads["segmentation"])
        for name, pred in heads.items():
            m = head_metrics(pred, true)
            if m["n"]:
                print(f"| {path} | {name} | {m['n']} | {m['smape']:.2f} | "
                      f"{m['mae_pt']:.2f} / {m['mae_mt']:.2f} / {m['mae_tl']:.2f} |")
            severity_rows.append((path, name, severity_metrics(pred, true)))
    print()
    bands = list(severity_rows[0][2])
    print("| cases | head | " + " | ".join(f"PT {b} (n)" for b in bands) + " |")
    print("|---|---|" + "---|" * len(bands))
    for path, name, sev in severity_rows:
        cells = [f"{s['smape']:.2f} ({s['n']})" if s.get("smape") is not None else f"- ({s['n']})"
                 for s in sev.values()]
        print(f"| {path} | {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
