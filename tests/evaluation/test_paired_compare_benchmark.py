"""benchmarks/paired_compare.py: two evaluations of the same films, matched by name, every head paired."""
from __future__ import annotations

import csv

import pytest

from tests.fixtures import load_benchmark


def _cases(path, rows):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return str(path)


def _row(name, true, reported, geometry):
    row = {"file": name}
    for prefix, v in (("true", true), ("reported", reported), ("geometry", geometry)):
        row.update({f"{prefix}_{a}": x for a, x in zip(("pt", "mt", "tl"), v)})
    return row


def test_b_better_on_every_film_is_a_win_and_unmatched_films_are_counted(tmp_path, capsys):
    truth = [(30.0 + i, 20.0, 10.0) for i in range(6)]
    a = _cases(tmp_path / "a.csv", [_row(f"f{i}", t, (t[0] + 6, 20, 10), (t[0] + 4, 20, 10))
                                    for i, t in enumerate(truth)] + [_row("only_a", (30, 20, 10), (30, 20, 10),
                                                                          (30, 20, 10))])
    b = _cases(tmp_path / "b.csv", [_row(f"f{i}", t, (t[0] + 2, 20, 10), (t[0] + 4, 20, 10))
                                    for i, t in reversed(list(enumerate(truth)))])  # another order
    assert load_benchmark("paired_compare").main([a, b, "--boot", "1000"]) == 0
    out = capsys.readouterr().out
    assert "6 films in both (1 only in A, 0 only in B)" in out
    lines = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| ")}
    assert "B better" in lines["reported"] and "tie" in lines["geometry"]
    assert "| +0.00 [+0.00, +0.00]" in lines["geometry"]


def test_different_truths_for_the_same_film_are_refused(tmp_path):
    a = _cases(tmp_path / "a.csv", [_row("f0", (30, 20, 10), (30, 20, 10), (30, 20, 10)),
                                    _row("f1", (30, 20, 10), (30, 20, 10), (30, 20, 10))])
    b = _cases(tmp_path / "b.csv", [_row("f0", (31, 20, 10), (30, 20, 10), (30, 20, 10)),
                                    _row("f1", (30, 20, 10), (30, 20, 10), (30, 20, 10))])
    with pytest.raises(SystemExit, match="different true angles"):
        load_benchmark("paired_compare").main([a, b])
