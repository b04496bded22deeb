"""Evaluation numbers and the files they go into: per-head metrics, Dice, report.json, cases.csv."""
from __future__ import annotations

import csv
import io
import math
from typing import Any, Iterable, Mapping

import numpy as np

from seg4reg_tf import fileio
from seg4reg_tf.geometry import ANGLE_NAMES, angle_mae, smape, smape_per_image


def head_metrics(pred, true) -> dict[str, Any]:
    """Metrics of one head: {"n", "smape" (%), "mae_pt", "mae_mt", "mae_tl" (degrees)}.

    Rows of `pred` (N, 3) with any NaN (a failed measurement) are left out; `n` counts the rest.
    With no valid row the numbers are None.
    """
    p = np.asarray(pred, dtype=np.float64).reshape(-1, 3)
    t = np.asarray(true, dtype=np.float64).reshape(-1, 3)
    if p.shape != t.shape:
        raise ValueError(f"pred and true: expected equal shapes (N, 3), got {p.shape} and {t.shape}")
    ok = np.all(np.isfinite(p), axis=1)
    if not ok.any():
        return {"n": 0, "smape": None, "mae_pt": None, "mae_mt": None, "mae_tl": None}
    mae = angle_mae(p[ok], t[ok])
    return {
        "n": int(ok.sum()),
        "smape": float(smape(p[ok], t[ok])),
        "mae_pt": float(mae[0]),
        "mae_mt": float(mae[1]),
        "mae_tl": float(mae[2]),
    }


SEVERITY_BINS = ((0.0, 20.0), (20.0, 40.0), (40.0, 60.0), (60.0, math.inf))  # true PT, degrees


def interval_metrics(lower, upper, true) -> dict[str, dict[str, Any]]:
    """{PT|MT|TL: {"n", "coverage", "mean_width", "n_without"}} of intervals [N, 3] deg against the truth
    [N, 3]: the share of true angles inside [lower, upper] and the mean upper - lower over the images that
    have an interval (finite bounds; the others, not measurable, are counted in n_without)."""
    lo, hi, t = (np.asarray(a, dtype=np.float64).reshape(-1, 3) for a in (lower, upper, true))
    if not lo.shape == hi.shape == t.shape:
        raise ValueError(f"lower, upper, true: expected equal shapes (N, 3), got {lo.shape}, {hi.shape}, {t.shape}")
    out = {}
    for j, name in enumerate(ANGLE_NAMES):
        ok = np.isfinite(lo[:, j]) & np.isfinite(hi[:, j]) & np.isfinite(t[:, j])
        inside = (t[ok, j] >= lo[ok, j]) & (t[ok, j] <= hi[ok, j])
        out[name] = {"n": int(ok.sum()), "coverage": float(np.mean(inside)) if ok.any() else None,
                     "mean_width": float(np.mean(hi[ok, j] - lo[ok, j])) if ok.any() else None,
                     "n_without": int(np.sum(np.isfinite(t[:, j]) & ~ok))}
    return out


def severity_metrics(pred, true) -> dict[str, dict[str, Any]]:
    """`head_metrics` per band of the true main curve (PT, degrees): "<20", "20-40", "40-60", ">=60"."""
    t = np.asarray(true, dtype=np.float64).reshape(-1, 3)
    p = np.asarray(pred, dtype=np.float64).reshape(-1, 3)
    out = {}
    for lo, hi in SEVERITY_BINS:
        name = f"<{hi:g}" if lo == 0 else f">={lo:g}" if math.isinf(hi) else f"{lo:g}-{hi:g}"
        sel = (t[:, 0] >= lo) & (t[:, 0] < hi)
        out[name] = head_metrics(p[sel], t[sel]) if sel.any() else {"n": 0, "smape": None}
    return out


def per_image_smape(pred, true) -> np.ndarray:
    """(N,) SMAPE percent per image; NaN where the prediction has a NaN."""
    p = np.asarray(pred, dtype=np.float64).reshape(-1, 3)
    t = np.asarray(true, dtype=np.float64).reshape(-1, 3)
    out = np.full(len(p), np.nan)
    ok = np.all(np.isfinite(p), axis=1)
    if ok.any():
        out[ok] = smape_per_image(p[ok], t[ok])
    return out


def write_report(report: Mapping[str, Any], path: str) -> str:
    """Write `report` as indented JSON (NaN -> null), atomically, on any filesystem; returns the path."""
    fileio.write_atomic(path, fileio.json_text(report))
    return path


def write_cases_csv(rows: Iterable[Mapping[str, Any]], path: str) -> str:
    """Write one CSV row per image (columns from the first row; NaN/None -> empty), atomically, on any
    filesystem; returns the path."""
    rows = list(rows)
    f = io.StringIO(newline="")
    if rows:
        writer = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        writer.writeheader()
        for row in rows:
            out = {}
            for k, v in row.items():
                v = fileio.json_safe(v)
                out[k] = "" if v is None else (f"{v:.4f}" if isinstance(v, float) else v)
            writer.writerow(out)
    fileio.write_atomic(path, f.getvalue())
    return path
