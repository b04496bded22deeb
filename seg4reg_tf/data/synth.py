"""Synthetic spine X-rays in exactly the AASCE layout (for demos and tests).

Each image shows 17 vertebrae T1..L5 (bright, growing in size downward, separated by discs) centred
on a straight, C- or S-shaped scoliotic curve and tilted along its tangent, with ribs, a pelvis,
soft tissue, blur and noise. Labels are the 68 corners (uint16 pixels, as in the real `.mat` files)
and angles.csv holds `geometry.cobb_angles` of those integer landmarks. Output is byte-identical for
the same seed.
"""
from __future__ import annotations

import io
import os

import numpy as np

from seg4reg_tf import fileio

SPLITS = ("training", "test")
_MAT_HEADER = b"MATLAB 5.0 MAT-file, Platform: seg4reg_tf synthetic, Created on: Thu Jan 01 00:00:00 1970"


def _fmt(v: float) -> str:
    """5 significant digits, MATLAB-style (%.5g without trailing zeros)."""
    s = f"{float(v):.5g}"
    return "0" if s == "-0" else s


def mat_bytes(p2: np.ndarray) -> bytes:
    """A MATLAB 5 file holding the single uint16 variable p2, with a fixed (deterministic) header."""
    import scipy.io

    buf = io.BytesIO()
    scipy.io.savemat(buf, {"p2": np.asarray(p2, dtype=np.uint16)}, format="5", do_compression=False)
    data = bytearray(buf.getvalue())
    data[:116] = _MAT_HEADER.ljust(116, b" ")  # scipy writes the current time here
    return bytes(data)


def _names(split: str, n: int) -> list[str]:
    stem = "synth" if split == "training" else f"synth-{split}"
    names = []
    for i in range(1, n + 1):
        view = "AB"[(i // 3) % 2]
        extra = " (2)" if i % 7 == 0 else ""
        names.append(f"{stem}-{i:04d} {view} AP{extra}.jpg")
    return sorted(names)  # ASCII order, as filenames.csv


def _tilt_profile(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Control nodes (arc-length in [0, 1], tilt degrees) of the spine tangent angle."""
    kind = rng.choice(["straight", "C", "S"], p=[0.15, 0.4, 0.45])
    if kind == "straight":
        cobb = rng.uniform(0.0, 8.0)
        a, b = np.sort(rng.uniform(0.05, 0.95, 2))
        return np.array([a, b]), np.array([cobb / 2, -cobb / 2]) * rng.choice([-1, 1])
    cobb = float(np.clip(rng.gamma(3.0, 9.0), 5.0, 75.0))  # mean ~27 deg
    sign = rng.choice([-1.0, 1.0])
    if kind == "C":
        a = rng.uniform(0.0, 0.35)
        b = rng.uniform(max(a + 0.35, 0.55), 1.0)
        return np.array([a, b]), sign * np.array([cobb / 2, -cobb / 2])
    # S: two curves of opposite direction, the second a fraction of the first (or vice versa)
    ratio = rng.uniform(0.4, 1.0)
    a = rng.uniform(0.0, 0.2)
    m = rng.uniform(0.4, 0.6)
    b = rng.uniform(0.8, 1.0)
    first, second = (cobb, ratio * cobb) if rng.random() < 0.5 else (ratio * cobb, cobb)
    t0, t1, t2 = first, 0.0, second
    mean = (t0 + t1 + t2) / 3
    t0, t1, t2 = t0 - mean, t1 - mean, t2 - mean
    return np.array([a, m, b]), sign * np.array([t0, t1, t2])


def _interp_tilt(s: np.ndarray, nodes: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Cosine interpolation between nodes, constant beyond them."""
    out = np.full_like(s, values[0], dtype=np.float64)
    for k in range(len(nodes) - 1):
        sel = (s >= nodes[k]) & (s <= nodes[k + 1])
        u = (s[sel] - nodes[k]) / max(nodes[k + 1] - nodes[k], 1e-9)
        w = 0.5 - 0.5 * np.cos(np.pi * u)
        out[sel] = values[k] * (1 - w) + values[k + 1] * w
    out[s > nodes[-1]] = values[-1]
    return out


def synth_landmarks(rng: np.random.Generator, height: int, width_ratio: float):
    """Random spine geometry: (p2 (68, 2) float64 pixels, width W, vertebra heights (17,) px)."""
    nodes, values = _tilt_profile(rng)
    # Vertebra heights grow T1 -> L5; discs ~ 20-30 % of the vertebra height.
    rel_h = np.linspace(1.0, rng.uniform(1.3, 1.45), 17)
    gap = rng.uniform(0.2, 0.3)
    seg = rel_h * (1 + gap)  # arc length per vertebra (vertebra + disc)
    centres_s = np.cumsum(seg) - seg / 2 - gap * rel_h / 2
    total = np.sum(seg) - gap * rel_h[-1]
    s_unit = centres_s / total
    tilt = np.radians(_interp_tilt(s_unit, nodes, values) + rng.normal(0, 1.0, 17))
    # Centre line: integrate the tangent at fine resolution.
    fine = np.linspace(0, 1, 400)
    th = np.radians(_interp_tilt(fine, nodes, values))
    xs = np.concatenate([[0], np.cumsum(np.sin(th[1:]) * np.diff(fine))])
    ys = np.concatenate([[0], np.cumsum(np.cos(th[1:]) * np.diff(fine))])
    # Scale: T1 top at ~5-12 % of H, L5 bottom at ~74-84 %.
    top, bottom = rng.uniform(0.05, 0.12), rng.uniform(0.74, 0.84)
    scale = (bottom - top) * height / ys[-1]  # pixels per unit arc length
    h = rel_h * scale / total  # vertebra heights in px
    w = h * np.linspace(rng.uniform(1.3, 1.45), rng.uniform(1.5, 1.7), 17)
    cx = np.interp(s_unit, fine, xs) * scale
    cy = top * height + np.interp(s_unit, fine, ys) * scale
    corners = np.empty((17, 4, 2))
    for v in range(17):
        t = tilt[v]
        u = np.array([np.cos(t), -np.sin(t)])  # along the endplate, to the right
        n = np.array([np.sin(t), np.cos(t)])  # along the spine, downward
        wedge = rng.normal(0, 0.04) * h[v]
        c = np.array([cx[v], cy[v]])
        corners[v, 0] = c - u * w[v] / 2 - n * (h[v] / 2 + wedge / 2)
        corners[v, 1] = c + u * w[v] / 2 - n * (h[v] / 2 - wedge / 2)
        corners[v, 2] = c - u * w[v] / 2 + n * (h[v] / 2 + wedge / 2)
        corners[v, 3] = c + u * w[v] / 2 + n * (h[v] / 2 - wedge / 2)
    corners += rng.normal(0, 0.02, corners.shape) * h[:, None, None]
    p = corners.reshape(68, 2)
    # Width: the sampled aspect ratio, widened if the curve needs it; the spine near the centre.
    span = p[:, 0].max() - p[:, 0].min()
    width = int(max(round(width_ratio * height), np.ceil(span + 0.25 * height)))
    margin = width - span
    offset = rng.uniform(0.4, 0.6) * margin - p[:, 0].min()
    p[:, 0] += offset
    return p, width, h


def render_image(rng: np.random.Generator, p2: np.ndarray, height: int, width: int, vert_h: np.ndarray) -> np.ndarray:
    """uint8 [height, width] radiograph-like image of the vertebrae given by p2 (pixels)."""
    import cv2

    H, W = height, width
    c = p2.reshape(17, 4, 2)
    centres = c.mean(axis=1)
    img = np.zeros((H, W), np.float32)
    # Soft tissue: a body band brighter than air, with a vertical gradient.
    xx = np.arange(W, dtype=np.float32)
    yy = np.arange(H, dtype=np.float32)
    body_cx = float(np.median(centres[:, 0])) + rng.normal(0, 0.03 * W)
    body_w = rng.uniform(0.35, 0.5) * W
    band = np.exp(-(((xx - body_cx) / body_w) ** 4))
    grad = 0.8 + 0.25 * (yy / H)
    img += (rng.uniform(0.12, 0.22) * grad[:, None] * band[None, :]).astype(np.float32)
    img += rng.uniform(0.02, 0.06)
    shift = 4
    f = float(1 << shift)

    def pts(a):
        return np.round(np.asarray(a) * f).astype(np.int32)

    clutter = np.zeros((H, W), np.float32)  # ribs and pelvis add to the soft tissue
    # Ribs: arcs from the thoracic vertebrae sweeping out and down.
    rib_level = rng.uniform(0.1, 0.2)
    thick = max(2, int(0.22 * vert_h[0]))
    for v in range(1, 12):
        for side in (-1, 1):
            start = centres[v] + np.array([side * 0.6 * vert_h[v] * 1.5, 0.0])
            length = W * rng.uniform(0.3, 0.45) * (0.6 + 0.4 * np.sin(np.pi * (v + 1) / 13))
            t = np.linspace(0, 1, 12)
            x = start[0] + side * length * np.sin(t * np.pi / 2)
            y = start[1] - 0.3 * vert_h[v] + length * 0.55 * (t**1.6)
            cv2.polylines(clutter, [pts(np.stack([x, y], 1))], False, rib_level, thick, cv2.LINE_AA, shift)
    # Pelvis: iliac wings and sacrum below L5.
    l5 = centres[16]
    pelvis_y = l5[1] + 1.6 * vert_h[16]
    for side in (-1, 1):
        axes = (int(rng.uniform(1.6, 2.2) * vert_h[16] * f), int(rng.uniform(2.2, 3.0) * vert_h[16] * f))
        cen = (int((l5[0] + side * 2.6 * vert_h[16]) * f), int(pelvis_y * f))
        level = rng.uniform(0.12, 0.2)
        cv2.ellipse(clutter, cen, axes, side * 15, 0, 360, level, -1, cv2.LINE_AA, shift)
        cv2.ellipse(clutter, cen, axes, side * 15, 0, 360, level + 0.1, thick, cv2.LINE_AA, shift)
    sac = np.array(
        [[l5[0] - 1.0 * vert_h[16], l5[1] + 0.9 * vert_h[16]], [l5[0] + 1.0 * vert_h[16], l5[1] + 0.9 * vert_h[16]],
         [l5[0], l5[1] + 3.5 * vert_h[16]]]
    )
    cv2.fillPoly(clutter, [pts(sac)], rng.uniform(0.2, 0.3), cv2.LINE_AA, shift)
    img += clutter
    # Vertebrae: body, brighter cortical rim, two pedicles.
    body_level = rng.uniform(0.5, 0.65)
    for v in range(17):
        q = c[v][[0, 1, 3, 2]]  # TL, TR, BR, BL as a polygon
        level = body_level * rng.uniform(0.9, 1.05)
        cv2.fillPoly(img, [pts(q)], level, cv2.LINE_AA, shift)
        rim = max(1, int(0.08 * vert_h[v]))
        cv2.polylines(img, [pts(q)], True, min(1.0, level + 0.2), rim, cv2.LINE_AA, shift)
        left, right = (c[v, 0] + c[v, 2]) / 2, (c[v, 1] + c[v, 3]) / 2
        ang = float(np.degrees(np.arctan2(right[1] - left[1], right[0] - left[0])))
        for a in (0.25, 0.75):
            pc = left + a * (right - left)
            ax = (int(0.14 * vert_h[v] * f), int(0.22 * vert_h[v] * f))
            cv2.ellipse(img, (int(pc[0] * f), int(pc[1] * f)), ax, ang, 0, 360, min(1.0, level + 0.25), max(1, rim),
                        cv2.LINE_AA, shift)
    sigma = rng.uniform(0.8, 2.0) * H / 1000.0
    img = cv2.GaussianBlur(img, (0, 0), sigma)
    img += rng.standard_normal((H, W), dtype=np.float32) * np.float32(rng.uniform(0.015, 0.035))
    gamma = rng.uniform(0.8, 1.2)
    img = np.clip(img, 0.0, 1.0) ** np.float32(gamma)
    return np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)


def synth_example(rng: np.random.Generator, height_range=(900, 1300)):
    """One synthetic example: (uint8 image [H, W], p2 uint16 (68, 2))."""
    lo, hi = height_range
    for _ in range(20):
        height = int(rng.integers(lo, hi + 1))
        p, width, vert_h = synth_landmarks(rng, height, rng.uniform(0.3, 0.5))
        p2 = np.round(p)
        if p2.min() >= 0 and np.all(p2[:, 0] <= width - 1) and np.all(p2[:, 1] <= height - 1):
            break
    else:  # pragma: no cover - geometry is scaled to fit; this guards odd ranges
        raise RuntimeError("synthetic spine did not fit the image in 20 tries")
    image = render_image(rng, p, height, width, vert_h)
    return image, p2.astype(np.uint16)


def write_synthetic_dataset(out, n_train: int, n_test: int, seed: int, *, height_range=(900, 1300),
                            progress: bool = True) -> None:
    """Write a synthetic dataset in the AASCE layout under `out` (splits "training" and "test").

    Files: data/<split>/<name>.jpg (8-bit grayscale JPEG), labels/<split>/<name>.jpg.mat (p2 uint16
    (68, 2)), labels/<split>/filenames.csv (CRLF), landmarks.csv and angles.csv (5 significant digits;
    angles = geometry.cobb_angles(p2 as float64, H)). Byte-identical for the same arguments.

    Args:
        out: output root (created).
        n_train, n_test: number of images per split (>= 0).
        seed: random seed (int >= 0).
        height_range: (min, max) image height in pixels; widths are 0.3-0.5 x height.
    """
    import cv2
    from tqdm.auto import tqdm

    from seg4reg_tf.geometry import cobb_angles

    for key, val in (("n_train", n_train), ("n_test", n_test), ("seed", seed)):
        if not isinstance(val, (int, np.integer)) or isinstance(val, bool) or val < 0:
            raise ValueError(f"{key}: expected an int >= 0, got {val!r}")
    if (len(height_range) != 2 or not all(isinstance(v, (int, np.integer)) for v in height_range)
            or not 64 <= height_range[0] <= height_range[1]):
        raise ValueError(f"height_range: expected (min, max) ints with 64 <= min <= max, got {height_range!r}")
    out = os.fspath(out)  # any TensorFlow filesystem (seg4reg_tf.fileio)
    jobs = [(split, n) for split, n in zip(SPLITS, (n_train, n_test))]
    bar = tqdm(total=n_train + n_test, desc="synthetic X-rays", unit="img", disable=not progress)
    for split_idx, (split, n) in enumerate(jobs):
        image_dir = fileio.join(out, "data", split)
        label_dir = fileio.join(out, "labels", split)
        fileio.makedirs(image_dir)
        fileio.makedirs(label_dir)
        lm_rows, angle_rows = [], []
        names = _names(split, n)
        for i, name in enumerate(names):
            rng = np.random.default_rng([int(seed), split_idx, i])
            image, p2 = synth_example(rng, tuple(int(v) for v in height_range))
            h, w = image.shape
            ok, jpg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 92])
            if not ok:  # pragma: no cover
                raise RuntimeError(f"{name}: JPEG encoding failed")
            fileio.write_atomic(fileio.join(image_dir, name), jpg.tobytes())
            fileio.write_atomic(fileio.join(label_dir, name + ".mat"), mat_bytes(p2))
            p = p2.astype(np.float64)
            lm_rows.append(",".join(_fmt(v) for v in np.concatenate([p[:, 0] / w, p[:, 1] / h])))
            angle_rows.append(",".join(_fmt(v) for v in cobb_angles(p, h)))
            bar.update(1)
        # angles.csv last: `seg4reg train` takes its presence for a complete synthetic root
        for fname, text in (("filenames.csv", "".join(name + "\r\n" for name in names)),
                            ("landmarks.csv", "".join(row + "\n" for row in lm_rows)),
                            ("angles.csv", "".join(row + "\n" for row in angle_rows))):
            fileio.write_atomic(fileio.join(label_dir, fname), text.encode("ascii"))
    bar.close()
