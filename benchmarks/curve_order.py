"""Which curve is which: how often the geometry and segmentation heads rank MT and TL the other way round,
and what each way of fusing them scores, paired per film against the shipped slot-by-slot mean.

    python benchmarks/curve_order.py benchmarks/results/out_of_fold.csv --data AASCE_ROOT

Rules: pair the curves by size (the segmentation head's MT and TL exchanged where the ranks differ), the
same only where the exchange fits far better (its L1 distance under r times the slot-by-slot one), or the
geometry or the segmentation head alone where the ranks differ by more than `ORDER_TOLERANCE`.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from paired_compare import read_answers  # noqa: E402

from seg4reg_tf.evaluation.paired import paired_difference  # noqa: E402
from seg4reg_tf.geometry import smape_per_image  # noqa: E402
from seg4reg_tf.geometry.curve_order import ORDER_TOLERANCE, curves_swapped  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("answers", help="an out-of-fold file (benchmarks/out_of_fold.py) or a cases.csv of evaluate")
    p.add_argument("--data", default=None, help="AASCE root (the truth of out-of-fold files)")
    args = p.parse_args(argv)
    _, truth, heads = read_answers(args.answers, args.data)
    g, s = heads["geometry"], heads["segmentation"]
    exchanged = s[:, [0, 2, 1]]
    slot_wise = 0.5 * (g + s)
    ranks = curves_swapped(g, s)
    differs = curves_swapped(g, s, ORDER_TOLERANCE)
    base = smape_per_image(truth, slot_wise)
    print(f"{len(truth)} films; ranks of MT and TL differ on {ranks.sum()}, by more than {ORDER_TOLERANCE:g} deg "
          f"on {differs.sum()}")
    print(f"slot-by-slot mean (shipped, A below): SMAPE {base.mean():.2f}")
    straight = np.abs(s[:, 1:] - g[:, 1:]).sum(1)
    crossed = np.abs(exchanged[:, 1:] - g[:, 1:]).sum(1)
    rules = {"pair by size": ranks}
    rules.update({f"pair by size where it fits {r:g}x better": ranks & (crossed < r * straight) for r in (0.2, 0.5)})
    for name, where in rules.items():
        fused = np.where(where[:, None], 0.5 * (g + exchanged), slot_wise)
        print(f"{name} ({where.sum()} films): {paired_difference(base, smape_per_image(truth, fused))}")
    for name, head in (("geometry", g), ("segmentation", s)):
        fused = np.where(differs[:, None], head, slot_wise)
        print(f"the {name} head where the ranks differ: {paired_difference(base, smape_per_image(truth, fused))}")
    mae = np.abs(slot_wise - truth)

    def three(v):
        return " / ".join(f"{x:.2f}" for x in v)

    print(f"slot-by-slot MAE PT / MT / TL where the ranks differ: {three(mae[differs].mean(0))}; "
          f"elsewhere {three(mae[~differs].mean(0))}")
    print("per-film SMAPE where the ranks differ: "
          + ", ".join(f"{n} {smape_per_image(truth, a)[differs].mean():.2f}"
                      for n, a in (("slot-by-slot", slot_wise), ("by size", 0.5 * (g + exchanged)), ("geometry", g),
                                   ("segmentation", s))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
