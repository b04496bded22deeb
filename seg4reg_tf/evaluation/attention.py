"""Does the CAM attention look at the spine? `attention_in_spine` and `attention_area` of one image.

The spine band is the ground-truth vertebrae (rasterised from the 68 landmarks in the model frame)
widened horizontally by one median vertebra width to each side, then area-averaged onto the
attention grid (each cell holds the band's share of its pixels, b in [0, 1]). For attention A >= 0:
  attention_in_spine = sum(A * b) / sum(A)   (the share of attention mass on the band),
  attention_area     = mean(b)               (the band's share of the frame: uniform attention's score).
"""
from __future__ import annotations

import cv2
import numpy as np

from seg4reg_tf.geometry import N_VERTEBRAE, landmarks_to_label_map


def median_vertebra_width(landmarks) -> float:
    """Median over the vertebrae of mean(|TR - TL|, |BR - BL|) for (68, 2) corners (NaN rows skipped)."""
    c = np.asarray(landmarks, dtype=np.float64).reshape(N_VERTEBRAE, 4, 2)
    widths = 0.5 * (np.linalg.norm(c[:, 1] - c[:, 0], axis=1) + np.linalg.norm(c[:, 3] - c[:, 2], axis=1))
    widths = widths[np.isfinite(widths)]
    if widths.size == 0:
        raise ValueError("landmarks: no vertebra with 4 finite corners")
    return float(np.median(widths))


def spine_band(landmarks, height: int, width: int) -> np.ndarray:
    """bool [height, width]: vertebrae of (68, 2) model-frame landmarks widened by one median vertebra
    width to the left and to the right."""
    fg = (landmarks_to_label_map(landmarks, height, width) > 0).astype(np.uint8)
    half = int(round(median_vertebra_width(landmarks)))
    kernel = np.ones((1, 2 * half + 1), np.uint8)
    return cv2.dilate(fg, kernel) > 0


def pool_to_grid(mask, grid) -> np.ndarray:
    """Area-average an [H, W] mask onto an (h, w) grid (H, W multiples of h, w) -> float [h, w] in [0, 1]."""
    m = np.asarray(mask, dtype=np.float64)
    h, w = int(grid[0]), int(grid[1])
    if m.ndim != 2 or m.shape[0] % h or m.shape[1] % w:
        raise ValueError(f"mask: expected [H, W] with H, W multiples of the grid {(h, w)}, got shape {m.shape}")
    return m.reshape(h, m.shape[0] // h, w, m.shape[1] // w).mean(axis=(1, 3))


def attention_in_spine(attention, landmarks, model_size) -> tuple[float, float]:
    """(attention_in_spine, attention_area) of one image.

    Args:
        attention: [h, w] CAM attention (non-negative).
        landmarks: (68, 2) ground-truth corners in the model frame (letterboxed pixels).
        model_size: (H, W) of the model input; multiples of (h, w).

    The share is NaN when the attention is all zero.
    """
    a = np.asarray(attention, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"attention: expected [h, w], got shape {a.shape}")
    if np.any(a < 0) or not np.all(np.isfinite(a)):
        raise ValueError("attention: expected finite values >= 0")
    b = pool_to_grid(spine_band(landmarks, int(model_size[0]), int(model_size[1])), a.shape)
    total = a.sum()
    share = float((a * b).sum() / total) if total > 0 else float("nan")
    return share, float(b.mean())
