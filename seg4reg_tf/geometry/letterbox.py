"""`Letterbox`: the aspect-keeping fit of an original X-ray into the model frame, as one value.

A point (x, y) of the original (pixel edges at integers, centre of pixel (i, j) at (j + 0.5, i + 0.5))
maps to (x * scale + pad_left, y * scale + pad_top) in the model frame, exactly (no rounding of the
resized size). The TF twin that builds it inside graphs is `data.preprocess.letterbox_transform`
(the same five numbers as a float32 [5] tensor, read back by `from_vector`); the SavedModel returns it as
`original_size` [B, 2], `scale` [B], `padding` [B, 2] (`from_outputs`).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import cv2
import numpy as np

# the SavedModel outputs that carry the letterbox of each image
OUTPUT_KEYS = ("original_size", "scale", "padding")


@dataclasses.dataclass(frozen=True)
class Letterbox:
    """scale (model px per original px), pad_top / pad_left (model px), original height / width (px)."""

    scale: float
    pad_top: float
    pad_left: float
    orig_height: float
    orig_width: float

    def __post_init__(self):
        for name in ("scale", "orig_height", "orig_width"):
            value = float(getattr(self, name))
            if not np.isfinite(value) or value <= 0:
                raise ValueError(f"letterbox.{name}: expected a positive finite number, got {value}")
        for name in ("pad_top", "pad_left"):
            if not np.isfinite(float(getattr(self, name))):
                raise ValueError(f"letterbox.{name}: expected a finite number, got {getattr(self, name)}")

    @classmethod
    def from_vector(cls, vector) -> "Letterbox":
        """From the pipeline's (scale, pad_top, pad_left, orig_h, orig_w) vector."""
        t = np.asarray(vector, dtype=np.float64).reshape(-1)
        if t.size != 5:
            raise ValueError(f"transform: expected (scale, pad_top, pad_left, orig_h, orig_w), got {t.size} values")
        return cls(*(float(v) for v in t))

    @classmethod
    def from_outputs(cls, outputs: Mapping[str, Any], index: int = 0) -> "Letterbox":
        """From image `index` of the SavedModel outputs `original_size`, `scale`, `padding`."""
        missing = [k for k in OUTPUT_KEYS if k not in outputs]
        if missing:
            raise ValueError(f"model outputs: expected {list(OUTPUT_KEYS)} (the letterbox), missing {missing}")
        h, w = np.asarray(outputs["original_size"], np.float64).reshape(-1, 2)[index]
        top, left = np.asarray(outputs["padding"], np.float64).reshape(-1, 2)[index]
        return cls(float(np.asarray(outputs["scale"], np.float64).reshape(-1)[index]), float(top), float(left),
                   float(h), float(w))

    @property
    def original_size(self) -> tuple[int, int]:
        """(height, width) of the original in whole pixels."""
        return int(round(self.orig_height)), int(round(self.orig_width))

    @property
    def model_size(self) -> tuple[int, int]:
        """(H, W) of the model frame (the padding is centred, so it is exact)."""
        return (int(round(self.orig_height * self.scale + 2 * self.pad_top)),
                int(round(self.orig_width * self.scale + 2 * self.pad_left)))

    # ----------------------------------------------------------------------------------- points
    def to_model(self, points) -> np.ndarray:
        """(N, 2) original (x, y) pixels -> model frame (NaN rows stay NaN)."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        return p * self.scale + np.array([self.pad_left, self.pad_top])

    def to_original(self, points) -> np.ndarray:
        """(N, 2) model-frame (x, y) -> original pixels."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        return (p - np.array([self.pad_left, self.pad_top])) / self.scale

    # ------------------------------------------------------------------------------------ masks
    def mask_to_original(self, mask, *, nearest: bool = True) -> np.ndarray:
        """[H, W] model-frame map -> [orig_h, orig_w]: nearest neighbour (labels) or bilinear (scores);
        outside the model frame 0."""
        img = np.ascontiguousarray(mask)
        if img.dtype == np.bool_:
            img = img.astype(np.uint8)
        off = 0.5 * self.scale - 0.5  # pixel centres at index + 0.5 in both frames
        m = np.array([[self.scale, 0.0, self.pad_left + off], [0.0, self.scale, self.pad_top + off]])
        flags = (cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR) | cv2.WARP_INVERSE_MAP
        h, w = self.original_size
        return cv2.warpAffine(img, m, (w, h), flags=flags, borderValue=0)

    def grid_to_original(self, grid) -> np.ndarray:
        """float [h, w] map covering the whole model frame (the attention grid) -> float32
        [orig_h, orig_w], bilinear."""
        h, w = self.model_size
        up = cv2.resize(np.asarray(grid, np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        return self.mask_to_original(up, nearest=False)
