"""benchmarks/compare_heads.py: heads of a cases.csv side by side, the geometry/segmentation mean, severity."""
from __future__ import annotations

import csv

from tests.fixtures import load_benchmark


def _bench():
    return load_benchmark("compare_heads")


def test_the_mean_of_two_heads_is_scored_from_the_cases(tmp_path, capsys):
    path = tmp_path / "cases.csv"
    rows = [  # truth; geometry 10 deg too high on PT, segmentation 10 too low: their mean is exact
        {"file": "a", "true_pt": 30, "true_mt": 10, "true_tl": 20, "geometry_pt": 40, "geometry_mt": 10,
         "geometry_tl": 20, "segmentation_pt": 20, "segmentation_mt": 10, "segmentation_tl": 20, "fitted_pt": ""},
    ]
    rows[0].update(fitted_mt="", fitted_tl="")
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert _bench().main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "| geometry | 1 | 7.69 |" in out  # 100 * 10 / (70 + 60)
    assert "| segmentation | 1 | 9.09 |" in out  # 100 * 10 / (50 + 60)
    assert "| mean(geometry, segmentation) | 1 | 0.00 |" in out
    assert "fitted | 0" not in out  # a head without a valid row is not scored
    assert "| 0.00 (1) |" in out  # the mean's SMAPE in the 20-40 deg band
