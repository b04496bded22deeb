"""Landmarks <-> vertebra label maps."""
from __future__ import annotations

import cv2
import numpy as np

from seg4reg_tf.geometry.cobb import N_LANDMARKS, N_VERTEBRAE

N_CLASSES = N_VERTEBRAE + 1  # background + T1..L5


def vertebra_polygon(corners: np.ndarray) -> np.ndarray:
    """(4, 2) corners in any order -> (4, 2) in a non-self-intersecting order (by angle about the centre)."""
    centre = corners.mean(axis=0)
    order = np.argsort(np.arctan2(corners[:, 1] - centre[1], corners[:, 0] - centre[0]))
    return corners[order]


def implausible_vertebrae(landmarks, max_ratio: float = 4.0) -> np.ndarray:
    """(17,) bool: vertebrae whose centre lies more than `max_ratio` median spacings from every neighbour.

    19 of the 481 real training labels place L5 near the top of the image (L5 cut off by the image
    border, the corners put anywhere); such a vertebra is not where the image shows it.
    """
    c = np.asarray(landmarks, dtype=np.float64).reshape(N_VERTEBRAE, 4, 2).mean(axis=1)
    gaps = np.linalg.norm(np.diff(c, axis=0), axis=1)  # (16,) between v and v + 1
    far = gaps > max_ratio * max(float(np.median(gaps)), 1e-9)
    above = np.concatenate([[True], far])  # gap to the previous vertebra (none for T1)
    below = np.concatenate([far, [True]])
    return above & below


def landmarks_to_label_map(landmarks, height: int, width: int, *, drop_implausible: bool = True) -> np.ndarray:
    """uint8 [height, width]: 0 background, v + 1 inside vertebra v's quadrilateral (v = 0 is T1).

    Corners are re-sorted before filling, so the swapped corners of the real labels still give a
    filled quadrilateral. Later vertebrae overwrite earlier ones where they overlap. Vertebrae that
    `implausible_vertebrae` flags are left out (background) unless `drop_implausible` is False.
    """
    p = np.asarray(landmarks, dtype=np.float64)
    if p.shape != (N_LANDMARKS, 2):
        raise ValueError(f"landmarks: expected shape (68, 2), got {p.shape}")
    out = np.zeros((int(height), int(width)), dtype=np.uint8)
    skip = implausible_vertebrae(p) if drop_implausible else np.zeros(N_VERTEBRAE, bool)
    shift = 4  # sub-pixel precision for fillPoly
    for v in np.flatnonzero(~skip):
        poly = vertebra_polygon(p[4 * v : 4 * v + 4])
        pts = np.round((poly - 0.5) * (1 << shift)).astype(np.int32)  # pixel centres at integer + 0.5
        cv2.fillPoly(out, [pts], color=int(v) + 1, lineType=cv2.LINE_8, shift=shift)
    return out


def foreground(label_map) -> np.ndarray:
    """Binary float32 mask: 1 where any vertebra."""
    return (np.asarray(label_map) > 0).astype(np.float32)


def label_map_to_landmarks(label_map, min_pixels: int = 4) -> np.ndarray:
    """(68, 2) float64 landmarks-like corners from a label map, NaN rows for absent vertebrae.

    Each vertebra's region is fitted with a minimum-area rectangle; its corners are ordered
    TL, TR, BL, BR as in the AASCE labels (left/right by x after aligning the rectangle's long
    axis closest to horizontal, so the vertebra vector is the rectangle's horizontal side).
    Coordinates are pixel centres ((i + 0.5) convention, as in `landmarks_to_label_map`).
    """
    lab = np.asarray(label_map)
    if lab.ndim != 2:
        raise ValueError(f"label_map: expected a 2-D [H, W] array, got shape {lab.shape}")
    out = np.full((N_LANDMARKS, 2), np.nan)
    for v in range(N_VERTEBRAE):
        ys, xs = np.nonzero(lab == v + 1)
        if len(xs) < min_pixels:
            continue
        pts = np.stack([xs, ys], axis=1).astype(np.float32) + 0.5
        box = cv2.boxPoints(cv2.minAreaRect(pts)).astype(np.float64)  # 4 corners in cyclic order
        out[4 * v : 4 * v + 4] = _order_corners(box)
    return out


def _order_corners(box: np.ndarray) -> np.ndarray:
    """Cyclic rectangle corners -> TL, TR, BL, BR with the top/bottom sides the most horizontal ones."""
    edges = [(k, (k + 1) % 4) for k in range(4)]

    def slope(e):
        d = box[e[1]] - box[e[0]]
        return abs(d[1]) / (abs(d[0]) + 1e-12)

    # The two most horizontal opposite edges are the endplates.
    e_a, e_b = sorted([edges[0], edges[1]], key=slope)[0], None
    e_b = edges[(edges.index(e_a) + 2) % 4]
    top, bottom = sorted([e_a, e_b], key=lambda e: box[list(e), 1].mean())
    tl, tr = sorted([box[top[0]], box[top[1]]], key=lambda q: q[0])
    bl, br = sorted([box[bottom[0]], box[bottom[1]]], key=lambda q: q[0])
    return np.stack([tl, tr, bl, br])
