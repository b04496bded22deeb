"""Two recipes on the same films, paired: every head, per severity, and the per-image SMAPE difference.

    python benchmarks/paired_compare.py A B [--data /path/to/boostnet_labeldata] [--boot 10000]

A and B: out-of-fold files (`benchmarks/out_of_fold.py`; the truth is read from --data) or cases.csv
files of `seg4reg evaluate` (the truth is in them), on the same films (matched by file name; films only
one of them has are left out and counted). For each head both have: SMAPE of A and of B, and mean(SMAPE_B
- SMAPE_A) per film with its bootstrap 95% interval (`evaluation.paired`); then the reported answer per
severity band of the true main curve. A recipe wins only when that interval excludes zero, on two seeds
(docs/design.md section 5).
"""
from __future__ import annotations

import argparse
import csv
import os
import sys

import numpy as np

from seg4reg_tf.evaluation.report import per_image_smape, severity_metrics

# head name in cases.csv -> output key in an out-of-fold file ("headline": cases.csv of report schema 1)
FORMER = {"headline": "reported"}
HEADS = {"reported": "cobb_angles", "geometry": "cobb_angles_geometry", "segmentation": "cobb_angles_segmentation",
         "image": "cobb_angles_image"}
ANGLES = ("pt", "mt", "tl")


def read_answers(path: str, data: str | None) -> tuple[list[str], np.ndarray, dict[str, np.ndarray]]:
    """(file names [N], truth [N, 3], {head: [N, 3]}) of an out-of-fold file or a cases.csv."""
    with open(path, newline="") as f:
        fields = csv.DictReader(f).fieldnames or []
    if "true_pt" in fields:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))

        def column(prefix):
            return np.array([[float(r[f"{prefix}_{a}"] or "nan") for a in ANGLES] for r in rows])

        heads = {h: column(h) for h in HEADS if f"{h}_pt" in fields}
        heads.update({new: column(old) for old, new in FORMER.items() if f"{old}_pt" in fields})
        return [r["file"] for r in rows], column("true"), heads
    from seg4reg_tf.evaluation.out_of_fold import read_out_of_fold

    keys, outputs = read_out_of_fold(path)
    if data is None:
        raise SystemExit(f"{path}: an out-of-fold file holds no truth; give --data (the AASCE root it came from)")
    from seg4reg_tf.data import aasce

    records = aasce.load_split(data, "training", progress=False)
    by_name = {os.path.basename(r.image_path): r for r in records}
    missing = [n for n in keys["filename"] if n not in by_name]
    if missing:
        raise SystemExit(f"{path}: {len(missing)} films are not in {data} split 'training' (e.g. {missing[0]!r})")
    truth = np.stack([np.asarray(by_name[n].angles, np.float64) for n in keys["filename"]])
    return list(keys["filename"]), truth, {h: outputs[k] for h, k in HEADS.items()}


def main(argv=None) -> int:
    from seg4reg_tf.evaluation.paired import paired_difference

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("a", help="the reference: an out-of-fold file or a cases.csv")
    p.add_argument("b", help="the candidate, on the same films")
    p.add_argument("--data", default=None, help="AASCE root (the truth of out-of-fold files)")
    p.add_argument("--boot", type=int, default=10000, help="bootstrap draws")
    args = p.parse_args(argv)

    names_a, true_a, heads_a = read_answers(args.a, args.data)
    names_b, true_b, heads_b = read_answers(args.b, args.data)
    common = sorted(set(names_a) & set(names_b))
    if len(common) < 2:
        raise SystemExit(f"{args.a} and {args.b} share {len(common)} films; a paired comparison needs the same films")
    ia = [names_a.index(n) for n in common]
    ib = [names_b.index(n) for n in common]
    if not np.allclose(true_a[ia], true_b[ib], atol=0.01, equal_nan=True):
        raise SystemExit(f"{args.a} and {args.b}: the same films have different true angles")
    truth = true_a[ia]
    print(f"A = {args.a}, B = {args.b}: {len(common)} films in both ({len(names_a) - len(common)} only in A, "
          f"{len(names_b) - len(common)} only in B)")
    print()
    print("| head | SMAPE A | SMAPE B | mean(B - A) per film [95% interval] | verdict |")
    print("|---|---|---|---|---|")
    for head in [h for h in HEADS if h in heads_a and h in heads_b]:
        sa, sb = per_image_smape(heads_a[head][ia], truth), per_image_smape(heads_b[head][ib], truth)
        d = paired_difference(sa, sb, boot=args.boot)
        print(f"| {head} | {np.nanmean(sa):.2f} | {np.nanmean(sb):.2f} | {d.mean:+.2f} [{d.lo:+.2f}, {d.hi:+.2f}] "
              f"({d.n}) | {d.verdict} |")
    print()
    sev_a = severity_metrics(heads_a["reported"][ia], truth)
    sev_b = severity_metrics(heads_b["reported"][ib], truth)
    print("| reported answer, SMAPE | " + " | ".join(f"PT {band} (n)" for band in sev_a) + " |")
    print("|---|" + "---|" * len(sev_a))
    for name, sev in (("A", sev_a), ("B", sev_b)):
        print(f"| {name} | " + " | ".join("-" if s["smape"] is None else f"{s['smape']:.2f} ({s['n']})"
                                         for s in sev.values()) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
