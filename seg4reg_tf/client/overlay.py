"""Overlay PNG on the original X-ray: vertebra labels, attention heat map, Cobb lines, legend."""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from seg4reg_tf.export.prediction import Curve
from seg4reg_tf.geometry import N_VERTEBRAE, VERTEBRA_NAMES

LABEL_ALPHA = 0.35
HEAT_ALPHA = 0.45
CURVE_COLOURS = {"PT": (0, 0, 255), "MT": (0, 200, 0), "TL": (255, 120, 0)}  # BGR


def label_colours() -> np.ndarray:
    """uint8 [18, 3] BGR: black background, then 17 distinct hues T1..L5."""
    hsv = np.zeros((N_VERTEBRAE + 1, 1, 3), np.uint8)
    hsv[1:, 0, 0] = (np.arange(N_VERTEBRAE) * 180 * 7 // N_VERTEBRAE) % 180  # spread neighbours apart
    hsv[1:, 0, 1] = 230
    hsv[1:, 0, 2] = 255
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[:, 0, :]


def to_display(image: np.ndarray) -> np.ndarray:
    """2-D grey image -> uint8 BGR: uint8 as is, other types (uint16, float) min-max stretched."""
    a = np.asarray(image)
    if a.ndim == 3:
        a = a.mean(axis=-1).astype(a.dtype)
    if a.dtype == np.uint8:
        return cv2.cvtColor(a, cv2.COLOR_GRAY2BGR)
    a = a.astype(np.float64)
    lo, hi = float(a.min()), float(a.max())
    grey = np.zeros(a.shape, np.uint8) if hi <= lo else np.round((a - lo) / (hi - lo) * 255).astype(np.uint8)
    return cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)


def _blend(base: np.ndarray, colour: np.ndarray, weight: np.ndarray) -> np.ndarray:
    w = weight[..., None].astype(np.float32)
    return np.round(base.astype(np.float32) * (1 - w) + colour.astype(np.float32) * w).astype(np.uint8)


def _line_through(p: np.ndarray, q: np.ndarray, extend: float) -> tuple[tuple[int, int], tuple[int, int]]:
    d = q - p
    a, b = p - extend * d, q + extend * d
    return (int(round(a[0])), int(round(a[1]))), (int(round(b[0])), int(round(b[1])))


def _wrap(text: str, width: int, font: float, thick: int) -> list[str]:
    """`text` in lines at most `width` px wide: split at its double spaces (the groups it is made of), a group
    wider than a line at its spaces, a word wider than a line cut."""
    def fits(t: str) -> bool:
        return cv2.getTextSize(t, cv2.FONT_HERSHEY_SIMPLEX, font, thick)[0][0] <= width

    def cut(word: str) -> list[str]:
        chunks = []
        while word and not fits(word):
            k = max(1, max((n for n in range(1, len(word)) if fits(word[:n])), default=1))
            chunks.append(word[:k])
            word = word[k:]
        return chunks + ([word] if word else [])

    lines: list[str] = []
    for piece in text.split("  "):
        if lines and fits(f"{lines[-1]}  {piece}"):
            lines[-1] = f"{lines[-1]}  {piece}"
            continue
        lines.append("")
        for word in piece.split(" "):
            for chunk in cut(word):
                if lines[-1] and fits(f"{lines[-1]} {chunk}"):
                    lines[-1] = f"{lines[-1]} {chunk}"
                elif lines[-1]:
                    lines.append(chunk)
                else:
                    lines[-1] = chunk
    return [line for line in lines if line]


def render_overlay(
    image: np.ndarray,
    labels: np.ndarray | None = None,
    attention: np.ndarray | None = None,
    landmarks: np.ndarray | None = None,
    curves: Sequence[Curve] = (),
    title: Sequence[str] = (),
    outline: bool = False,
) -> np.ndarray:
    """uint8 BGR [h + title band, w + legend panel, 3] overlay in the original image's pixels.

    Args:
        image: [h, w] original grey image (any dtype).
        labels: uint8 [h, w] vertebra labels (0 background, 1..17) in original pixels, or None.
        attention: float [h, w] in [0, 1] in original pixels, or None.
        landmarks: (68, 2) x, y original pixels (NaN rows allowed) for the Cobb lines, or None.
        curves: the reported Cobb curves (`export.prediction.Curve`); a line is drawn along the upper endplate of
            `upper` and the lower
            endplate of `lower`, with "NAME angle deg (T?-T?)" beside it. A curve with upper == lower
            (the official algorithm's "no curve", angle 0) is not drawn.
        title: text lines for the title band.
        outline: also outline every vertebra of `landmarks` (thin white quadrilaterals).
    """
    h, w = np.asarray(image).shape[:2]
    out = to_display(image)
    for name, arr in (("labels", labels), ("attention", attention)):
        if arr is not None and np.asarray(arr).shape[:2] != (h, w):
            raise ValueError(f"{name}: expected shape {(h, w)} (the original image), got {np.asarray(arr).shape}")
    if attention is not None:
        att = np.clip(np.nan_to_num(np.asarray(attention, np.float32)), 0, 1)
        heat = cv2.applyColorMap(np.round(att * 255).astype(np.uint8), cv2.COLORMAP_JET)
        out = _blend(out, heat, HEAT_ALPHA * att)
    if labels is not None:
        lab = np.asarray(labels).astype(np.int64)
        if lab.min() < 0 or lab.max() > N_VERTEBRAE:
            raise ValueError(f"labels: expected values in 0..{N_VERTEBRAE}, got {lab.min()}..{lab.max()}")
        out = _blend(out, label_colours()[lab], LABEL_ALPHA * (lab > 0))

    unit = max(1.0, min(h, w) / 400.0)
    thick = max(1, int(round(2 * unit)))
    font = 0.5 * unit
    if landmarks is not None:
        lm = np.asarray(landmarks, np.float64)
        if outline:
            for v in range(N_VERTEBRAE):
                quad = lm[4 * v : 4 * v + 4][[0, 1, 3, 2]]  # TL, TR, BR, BL
                if np.all(np.isfinite(quad)):
                    cv2.polylines(out, [np.round(quad).astype(np.int32)], True, (255, 255, 255), 1, cv2.LINE_AA)
        for curve in curves:
            if not curve.is_curve:
                continue
            colour = CURVE_COLOURS.get(curve.name, (255, 255, 255))
            top = lm[4 * curve.upper : 4 * curve.upper + 2]  # TL, TR of the upper end vertebra
            bottom = lm[4 * curve.lower + 2 : 4 * curve.lower + 4]  # BL, BR of the lower one
            if not (np.all(np.isfinite(top)) and np.all(np.isfinite(bottom))):
                continue
            for p, q in (top, bottom):
                a, b = _line_through(p, q, 0.3)
                cv2.line(out, a, b, colour, thick, cv2.LINE_AA)
            text = curve.caption
            anchor = (int(round(max(top[1, 0], bottom[1, 0]) + 0.35 * abs(top[1, 0] - top[0, 0]))),
                      int(round((top[1, 1] + bottom[1, 1]) / 2)))
            (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font, thick + 2)
            anchor = (int(np.clip(anchor[0], 0, max(0, w - tw - 2))),
                      int(np.clip(anchor[1], th + 2, max(th + 2, h - 4))))
            cv2.putText(out, text, anchor, cv2.FONT_HERSHEY_SIMPLEX, font, (0, 0, 0), thick + 2, cv2.LINE_AA)
            cv2.putText(out, text, anchor, cv2.FONT_HERSHEY_SIMPLEX, font, colour, thick, cv2.LINE_AA)

    # Title band above, legend panel to the right.
    line_h = int(round(28 * unit))
    title = [part for text in title for part in _wrap(text, w - int(12 * unit), font, max(1, thick // 2))]
    band = np.zeros((line_h * max(1, len(title)) + line_h // 2, w, 3), np.uint8)
    for k, text in enumerate(title):
        cv2.putText(band, text, (int(6 * unit), line_h * (k + 1) - line_h // 4), cv2.FONT_HERSHEY_SIMPLEX,
                    font, (255, 255, 255), max(1, thick // 2), cv2.LINE_AA)
    out = np.concatenate([band, out], axis=0)
    panel = np.zeros((out.shape[0], int(120 * unit), 3), np.uint8)
    colours = label_colours()
    row = int(round(18 * unit))
    y = row
    cv2.putText(panel, "attention", (int(4 * unit), y), cv2.FONT_HERSHEY_SIMPLEX, font * 0.8, (255, 255, 255), 1,
                cv2.LINE_AA)
    bar = cv2.applyColorMap(np.linspace(0, 255, panel.shape[1] - int(8 * unit)).astype(np.uint8)[None, :],
                            cv2.COLORMAP_JET)
    y += int(4 * unit)
    panel[y : y + int(8 * unit), int(4 * unit) : int(4 * unit) + bar.shape[1]] = bar[0][None]
    y += int(8 * unit) + row
    for v in range(N_VERTEBRAE):
        if y + row > panel.shape[0]:
            break
        c = tuple(int(x) for x in colours[v + 1])
        cv2.rectangle(panel, (int(4 * unit), y - int(10 * unit)), (int(16 * unit), y), c, -1)
        cv2.putText(panel, VERTEBRA_NAMES[v], (int(22 * unit), y), cv2.FONT_HERSHEY_SIMPLEX, font * 0.8,
                    (255, 255, 255), 1, cv2.LINE_AA)
        y += row
    return np.concatenate([out, panel], axis=1)
