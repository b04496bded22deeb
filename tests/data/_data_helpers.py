"""Small synthetic AASCE-like records for the data tests (independent of data/synth.py)."""
from __future__ import annotations

import os

import cv2
import numpy as np

from seg4reg_tf.data.aasce import AasceRecord
from seg4reg_tf.geometry import cobb_angles


def spine_landmarks(h: int, w: int, amp: float = 0.08, phase: float = 0.0, tilt_gain: float = 1.0) -> np.ndarray:
    """(68, 2) float64: 17 tilted rectangles down a sinusoidal spine inside an h x w image."""
    out = np.zeros((68, 2))
    top, bottom = 0.1 * h, 0.9 * h
    step = (bottom - top) / 17
    for v in range(17):
        cy = top + (v + 0.5) * step
        t = (cy - top) / (bottom - top)
        cx = w / 2 + amp * w * np.sin(2 * np.pi * t + phase)
        slope = amp * w * 2 * np.pi * np.cos(2 * np.pi * t + phase) / (bottom - top)
        ang = -np.arctan(slope) * tilt_gain  # vertebra tilt follows the curve
        half_w, half_h = 0.12 * w, 0.35 * step
        u = np.array([np.cos(ang), np.sin(ang)])   # along the endplate (pointing right)
        n = np.array([-np.sin(ang), np.cos(ang)])  # down
        c = np.array([cx, cy])
        out[4 * v + 0] = c - half_w * u - half_h * n  # TL
        out[4 * v + 1] = c + half_w * u - half_h * n  # TR
        out[4 * v + 2] = c - half_w * u + half_h * n  # BL
        out[4 * v + 3] = c + half_w * u + half_h * n  # BR
    return out


def spine_image(h: int, w: int, landmarks: np.ndarray, seed: int = 0) -> np.ndarray:
    """uint8 [h, w]: a dark noisy gradient with bright filled vertebrae."""
    rng = np.random.default_rng(seed)
    img = np.linspace(20, 60, h)[:, None] + np.zeros((1, w)) + rng.normal(0, 6, (h, w))
    img = np.clip(img, 0, 255).astype(np.uint8)
    for v in range(17):
        q = landmarks[4 * v : 4 * v + 4][[0, 1, 3, 2]]
        cv2.fillPoly(img, [np.round(q).astype(np.int32)], color=170 + 4 * v)
    return img


def make_records(out_dir, n: int = 3, sizes=((300, 120), (200, 160), (256, 100)), ext: str = ".png") -> list:
    """Write n images into out_dir and return AasceRecords (angles = official angles of the landmarks)."""
    os.makedirs(out_dir, exist_ok=True)
    recs = []
    for i in range(n):
        h, w = sizes[i % len(sizes)]
        lm = spine_landmarks(h, w, amp=0.05 + 0.03 * i, phase=0.7 * i)
        name = f"img {i} A AP{ext}"
        path = os.path.join(str(out_dir), name)
        assert cv2.imwrite(path, spine_image(h, w, lm, seed=i))
        recs.append(AasceRecord(filename=name, image_path=path, height=h, width=w, landmarks=lm,
                                angles=np.round(cobb_angles(lm, h), 2)))
    return recs
