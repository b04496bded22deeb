"""Test helpers: synthetic spines with known landmarks, letterboxing, tiny PNG records."""
from __future__ import annotations

import os

import cv2
import numpy as np

from seg4reg_tf.data.aasce import AasceRecord
from seg4reg_tf.geometry import cobb_angles


def make_spine(orig_h=2000, orig_w=800, amplitude=60.0, periods=1.0, phase=0.0, width=150.0):
    """(68, 2) landmarks of 17 rectangular vertebrae along x = cx + A sin(...), tilted with the curve."""
    top, bottom = 0.15 * orig_h, 0.85 * orig_h
    pitch = (bottom - top) / 17.0
    height = 0.75 * pitch
    cx = orig_w / 2.0
    k = 2 * np.pi * periods / (bottom - top)
    pts = []
    for v in range(17):
        yc = top + (v + 0.5) * pitch
        xc = cx + amplitude * np.sin(k * (yc - top) + phase)
        slope = amplitude * k * np.cos(k * (yc - top) + phase)  # dx/dy
        theta = np.arctan(slope)  # vertebra tilt: its horizontal axis perpendicular to the tangent
        u = np.array([np.cos(theta), -np.sin(theta)])  # along the endplate (rightwards)
        n = np.array([np.sin(theta), np.cos(theta)])  # down the spine
        c = np.array([xc, yc])
        tl = c - u * width / 2 - n * height / 2
        tr = c + u * width / 2 - n * height / 2
        bl = c - u * width / 2 + n * height / 2
        br = c + u * width / 2 + n * height / 2
        pts += [tl, tr, bl, br]
    return np.array(pts, dtype=np.float64)


def letterbox_transform(orig_h, orig_w, size=(512, 256)):
    """(scale, pad_top, pad_left, orig_h, orig_w) of an aspect-keeping, centre-padded resize."""
    h, w = size
    scale = min(h / orig_h, w / orig_w)
    return np.array([scale, (h - orig_h * scale) / 2.0, (w - orig_w * scale) / 2.0, orig_h, orig_w])


def to_model(landmarks, t):
    return np.stack([landmarks[:, 0] * t[0] + t[2], landmarks[:, 1] * t[0] + t[1]], axis=1)


def numpy_preprocess(image, size=(512, 256)):
    """Stand-in for data.preprocess.preprocess: letterbox to `size`, float32 [H, W, 1] in [0, 1]."""
    img = np.asarray(image)
    if img.ndim == 3:
        img = img[..., 0]
    oh, ow = img.shape
    t = letterbox_transform(oh, ow, size)
    m = np.array([[t[0], 0, t[2] + 0.5 * t[0] - 0.5], [0, t[0], t[1] + 0.5 * t[0] - 0.5]])
    out = cv2.warpAffine(img.astype(np.float32) / 255.0, m, (size[1], size[0]), flags=cv2.INTER_LINEAR)
    return out[..., None].astype(np.float32), t.astype(np.float32)


def write_records(directory, n=3, orig_h=400, orig_w=160, seed=0):
    """n tiny PNG X-rays with synthetic spines; returns list[AasceRecord]."""
    rng = np.random.default_rng(seed)
    records = []
    os.makedirs(directory, exist_ok=True)
    for i in range(n):
        lm = make_spine(orig_h, orig_w, amplitude=rng.uniform(5, 20), phase=rng.uniform(0, 3), width=40.0)
        from seg4reg_tf.geometry import landmarks_to_label_map

        img = (landmarks_to_label_map(lm, orig_h, orig_w) > 0).astype(np.uint8) * 200 + 20
        name = f"case {i} A AP.png"
        path = os.path.join(directory, name)
        cv2.imwrite(path, img)
        records.append(AasceRecord(name, path, orig_h, orig_w, lm, cobb_angles(lm, orig_h)))
    return records
