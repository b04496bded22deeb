"""benchmarks/curve_order.py: films whose heads rank MT and TL the other way round, counted, and each
fusing rule paired against the slot-by-slot mean."""
from __future__ import annotations

import csv

from tests.fixtures import load_benchmark


def _row(name, true, geometry, segmentation):
    row = {"file": name}
    reported = [(g + s) / 2 for g, s in zip(geometry, segmentation)]
    for prefix, v in (("true", true), ("reported", reported), ("geometry", geometry), ("segmentation", segmentation)):
        row.update({f"{prefix}_{a}": x for a, x in zip(("pt", "mt", "tl"), v)})
    return row


def test_true_transpositions_are_counted_and_pairing_by_size_wins_on_them(tmp_path, capsys):
    rows = []
    for i in range(8):  # the segmentation head puts the geometry head's (exact) curves in the other slots
        g = (40.0 + i, 30.0 + i, 12.0)
        rows.append(_row(f"swap{i}", g, g, (g[0], g[2], g[1])))
    for i in range(4):  # agreeing heads, 1 deg off each
        t = (35.0, 20.0 + i, 10.0)
        rows.append(_row(f"same{i}", t, [v + 1 for v in t], [v - 1 for v in t]))
    path = tmp_path / "cases.csv"
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert load_benchmark("curve_order").main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "12 films; ranks of MT and TL differ on 8, by more than 2 deg on 8" in out
    lines = {line.split(" (")[0].split(":")[0]: line for line in out.splitlines()}
    assert "B better" in lines["pair by size"]
    assert "B better" in lines["the geometry head where the ranks differ"]  # exact on these films
    assert "A better" in lines["the segmentation head where the ranks differ"]  # twice the slot-wise mean's error
