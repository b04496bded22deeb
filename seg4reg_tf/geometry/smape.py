"""SMAPE (the AASCE challenge metric) and per-angle MAE as pure NumPy functions."""
from __future__ import annotations

import numpy as np


def _pair(pred, true) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred, dtype=np.float64)
    t = np.asarray(true, dtype=np.float64)
    if p.ndim == 1:
        p = p[None]
    if t.ndim == 1:
        t = t[None]
    if p.shape != t.shape or p.ndim != 2:
        raise ValueError(f"pred and true: expected equal shapes (N, 3), got {p.shape} and {t.shape}")
    return p, t


def smape_per_image(pred, true) -> np.ndarray:
    """(N,) percent: 100 * sum_j |p - t| / sum_j (p + t) per image; 0/0 counts as 0."""
    p, t = _pair(pred, true)
    num = np.sum(np.abs(p - t), axis=1)
    den = np.sum(p + t, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(den == 0, 0.0, num / np.where(den == 0, 1.0, den))
    return 100.0 * ratio


def smape(pred, true) -> float:
    """Official AASCE SMAPE in percent over N images (arrays (N, 3) or (3,), degrees)."""
    return float(np.mean(smape_per_image(pred, true)))


def angle_mae(pred, true) -> np.ndarray:
    """(3,) mean absolute error in degrees for [PT, MT, TL]."""
    p, t = _pair(pred, true)
    return np.mean(np.abs(p - t), axis=0)
