"""Evaluation plots (matplotlib, Agg backend): predicted vs true, Bland-Altman and interval width against
error, one panel per angle."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from seg4reg_tf import fileio  # noqa: E402
from seg4reg_tf.geometry import ANGLE_NAMES  # noqa: E402


def _valid(pred, true) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred, dtype=np.float64).reshape(-1, 3)
    t = np.asarray(true, dtype=np.float64).reshape(-1, 3)
    if p.shape != t.shape:
        raise ValueError(f"pred and true: expected equal shapes (N, 3), got {p.shape} and {t.shape}")
    ok = np.all(np.isfinite(p), axis=1) & np.all(np.isfinite(t), axis=1)
    return p[ok], t[ok]


def plot_pred_vs_true(pred, true, path: str, title: str = "") -> str:
    """PNG with 3 panels (PT, MT, TL): predicted vs true degrees, identity line; returns the path."""
    p, t = _valid(pred, true)
    fig, axes = plt.subplots(1, 3, figsize=(12, 4))
    for j, ax in enumerate(axes):
        ax.scatter(t[:, j], p[:, j], s=12, alpha=0.7)
        hi = max(1.0, float(np.max(np.concatenate([t[:, j], p[:, j]]))) if len(p) else 1.0) * 1.05
        ax.plot([0, hi], [0, hi], "k--", lw=1, label="identity")
        ax.set_xlim(0, hi)
        ax.set_ylim(0, hi)
        ax.set_aspect("equal")
        ax.set_xlabel(f"true {ANGLE_NAMES[j]} (deg)")
        ax.set_ylabel(f"predicted {ANGLE_NAMES[j]} (deg)")
        ax.set_title(ANGLE_NAMES[j])
        ax.legend(loc="upper left", fontsize=8)
    return _save(fig, path, title)


def plot_bland_altman(pred, true, path: str, title: str = "") -> str:
    """PNG with 3 Bland-Altman panels: (pred - true) vs their mean, mean difference and +-1.96 SD lines."""
    p, t = _valid(pred, true)
    fig, axes = plt.subplots(1, 3, figsize=(12, 4))
    for j, ax in enumerate(axes):
        mean = (p[:, j] + t[:, j]) / 2.0
        diff = p[:, j] - t[:, j]
        ax.scatter(mean, diff, s=12, alpha=0.7)
        if len(diff):
            md, sd = float(np.mean(diff)), float(np.std(diff, ddof=1)) if len(diff) > 1 else 0.0
            ax.axhline(md, color="k", lw=1, label=f"mean {md:.2f}")
            ax.axhline(md + 1.96 * sd, color="r", ls="--", lw=1, label=f"+1.96 SD {md + 1.96 * sd:.2f}")
            ax.axhline(md - 1.96 * sd, color="r", ls="--", lw=1, label=f"-1.96 SD {md - 1.96 * sd:.2f}")
        ax.set_xlabel(f"mean of predicted and true {ANGLE_NAMES[j]} (deg)")
        ax.set_ylabel("predicted - true (deg)")
        ax.set_title(ANGLE_NAMES[j])
        ax.legend(loc="upper right", fontsize=8)
    return _save(fig, path, title)


def plot_interval_width(lower, upper, pred, true, path: str, title: str = "") -> str:
    """PNG with 3 panels: each image's interval width against its absolute error (deg), covered images
    and missed ones apart; an interval that tracks difficulty puts the large errors at the wide end."""
    lo, hi, p, t = (np.asarray(a, dtype=np.float64).reshape(-1, 3) for a in (lower, upper, pred, true))
    fig, axes = plt.subplots(1, 3, figsize=(12, 4))
    for j, ax in enumerate(axes):
        ok = np.isfinite(lo[:, j]) & np.isfinite(hi[:, j]) & np.isfinite(t[:, j]) & np.isfinite(p[:, j])
        width, err = hi[ok, j] - lo[ok, j], np.abs(p[ok, j] - t[ok, j])
        inside = (t[ok, j] >= lo[ok, j]) & (t[ok, j] <= hi[ok, j])
        ax.scatter(width[inside], err[inside], s=12, alpha=0.7, label=f"covered ({int(inside.sum())})")
        ax.scatter(width[~inside], err[~inside], s=16, color="r", marker="x", label=f"missed ({int((~inside).sum())})")
        top = max(1.0, float(np.max(np.concatenate([width, err]))) if ok.any() else 1.0) * 1.05
        ax.plot([0, top], [0, top / 2], "k--", lw=1, label="error = half width")
        ax.set_xlabel(f"{ANGLE_NAMES[j]} interval width (deg)")
        ax.set_ylabel("|predicted - true| (deg)")
        ax.set_title(ANGLE_NAMES[j])
        ax.legend(loc="upper left", fontsize=8)
    return _save(fig, path, title)


def _save(fig, path: str, title: str = "") -> str:
    """Title, tight layout, written through fileio (any filesystem), the figure closed; returns `path`."""
    try:
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        fileio.save_figure(fig, path, dpi=100)  # any filesystem
    finally:
        plt.close(fig)
    return path
