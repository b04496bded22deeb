"""`Prediction`: what an exported model says about one X-ray, read once from its outputs.

`seg4reg predict` writes it (JSON + overlay) and `seg4reg evaluate` folds over it, so both read the
SavedModel's outputs the same way (docs/architecture.md, "Outputs" and "predict JSON").
"""
from __future__ import annotations

import dataclasses
from typing import Mapping

import numpy as np

from seg4reg_tf.geometry import ANGLE_NAMES, N_VERTEBRAE, VERTEBRA_NAMES, Letterbox
from seg4reg_tf.geometry.seg_angles import SegAngles, segmentation_angles_details

# head name -> SavedModel output; "reported" is the config's head (`cobb_angles`)
HEAD_OUTPUTS = {
    "reported": "cobb_angles",
    "image": "cobb_angles_image",
    "segmentation": "cobb_angles_segmentation",
    "geometry": "cobb_angles_geometry",
}


def angle_text(angle: float, interval=None, unit: str = "") -> str:
    """"47.3 deg (43.1-52.0)" (`unit` " deg"), or without the interval when there is none."""
    return f"{angle:.1f}{unit}" + (f" ({interval[0]:.1f}-{interval[1]:.1f})" if interval else "")


@dataclasses.dataclass(frozen=True)
class Curve:
    """One reported Cobb curve: name (PT/MT/TL), angle (deg) and 0-based end vertebrae (0 = T1, 16 = L5)."""

    name: str
    angle: float
    upper: int
    lower: int
    interval: tuple | None = None  # (lower, upper) deg of the model's calibrated interval, or None
    role: str = ""  # "main" (AASCE's first column, the largest), "upper" / "lower" (above / below it), `curve_roles`
    lines_angle: float | None = None  # the angle between the drawn endplates when it is not `angle` (fused)

    @property
    def is_curve(self) -> bool:
        """False for the official algorithm's "no curve" (upper == lower, angle 0): nothing to draw."""
        return self.upper != self.lower

    @property
    def end_vertebrae(self) -> str:
        """"T5-T11", or "no curve"."""
        if not self.is_curve:
            return "no curve"
        return f"{VERTEBRA_NAMES[self.upper]}-{VERTEBRA_NAMES[self.lower]}"

    @property
    def label(self) -> str:
        """"47.3 deg (43.1-52.0)": the angle with its interval when there is one."""
        return angle_text(self.angle, self.interval, " deg")

    @property
    def caption(self) -> str:
        """What the overlay writes beside the curve: "main 47.3 (43.1-52.0) T5-T11" (degrees)."""
        return f"{self.role or self.name} {angle_text(self.angle, self.interval)} {self.end_vertebrae}"

    def to_json(self) -> dict:
        return {"role": self.role or None, "angle": self.angle,
                "interval": None if self.interval is None else list(self.interval),
                "upper": VERTEBRA_NAMES[self.upper], "lower": VERTEBRA_NAMES[self.lower],
                "end_vertebrae": self.end_vertebrae, "lines_angle": self.lines_angle}


def curve_roles(ends) -> tuple[str, str, str]:
    """Roles of the official algorithm's three curves from their (upper, lower) end vertebrae [3, 2]: the
    first is the main (largest) curve; each other is "upper" when it ends above the main curve's upper
    end vertebra, "lower" when it starts below its lower one, "none" for a no-curve (upper == lower).
    When both are above (or both below) the main curve, the farther one is "uppermost" ("lowest")."""
    (mu, ml), roles = ends[0], ["main"]
    for u, lo in ends[1:]:
        roles.append("none" if u == lo else "upper" if lo <= mu else "lower" if u >= ml else "secondary")
    (u1, l1), (u2, l2) = ends[1], ends[2]
    if roles[1] == roles[2] == "upper":
        roles[1 if u1 + l1 < u2 + l2 else 2] = "uppermost"
    elif roles[1] == roles[2] == "lower":
        roles[1 if u1 + l1 > u2 + l2 else 2] = "lowest"
    return tuple(roles)


@dataclasses.dataclass(frozen=True)
class Prediction:
    """One image's outputs of an exported model.

    Attributes:
        heads: head name ("reported", "image", "segmentation", "geometry"; those the model has) ->
            (3,) float64 degrees [PT, MT, TL].
        reported_head: "geometry" when the reported angles are the geometry head's, "fused" when they
            are the mean of the geometry and the segmentation head (`model.head: fused`), else
            "regression".
        curves: the reported angles' curves with their end vertebrae (the geometry head's, also for
            "fused"), or () when the reported head has none (a regression head gives three numbers,
            not vertebrae).
        vertebrae: (68, 2) original px, the geometry head's vertebrae (4 corners each), or None.
        vertebra_visible: (17,) bool, the vertebrae the geometry head found (the others were inferred
            from their neighbours), or None.
        heads_disagreement: mean |image head - segmentation head| degrees (output `consistency`), or None.
        letterbox: the model frame <-> original image mapping.
        labels: uint8 [H, W] vertebra labels in the model frame, or None.
        attention: float32 [h, w] attention grid, or None.
        measurable_score, measurable_reason: the model's verdict (score >= 0.5: measurable), or None / "".
        intervals: (3, 2) float64 deg, the calibrated interval (lower, upper) of each reported angle
            (`cobb_angles_lower` / `cobb_angles_upper`; NaN rows: not measurable), or None when the model
            has none.
    """

    heads: dict
    reported_head: str
    curves: tuple
    vertebrae: np.ndarray | None
    vertebra_visible: np.ndarray | None
    heads_disagreement: float | None
    letterbox: Letterbox
    labels: np.ndarray | None
    attention: np.ndarray | None
    measurable_score: float | None
    measurable_reason: str
    intervals: np.ndarray | None = None

    @property
    def angles(self) -> np.ndarray:
        """(3,) degrees: the reported angles."""
        return self.heads["reported"]

    @property
    def missing_vertebrae(self) -> list[str]:
        """Names of the vertebrae the geometry head did not find (its geometry there is inferred)."""
        if self.vertebra_visible is None:
            return []
        return [VERTEBRA_NAMES[v] for v in range(N_VERTEBRAE) if not self.vertebra_visible[v]]

    def fitted_vertebrae(self, **options) -> SegAngles | None:
        """The official Cobb geometry of the vertebrae fitted to `labels` in original pixels
        (`geometry.seg_angles.segmentation_angles_details` with `options`), or None without labels."""
        if self.labels is None:
            return None
        return segmentation_angles_details(self.labels, self.letterbox, **options)

    @classmethod
    def from_outputs(cls, outputs: Mapping, index: int = 0, letterbox: Letterbox | None = None) -> "Prediction":
        """Image `index` of a batch of outputs (numpy-convertible; `serving_default`'s, or any signature's
        with `letterbox` given). Raises ValueError naming an output of the wrong shape."""
        out = {k: np.asarray(v) for k, v in outputs.items()}
        letterbox = letterbox or Letterbox.from_outputs(out, index)
        heads = {}
        for name, key in HEAD_OUTPUTS.items():
            if key in out:
                heads[name] = _row(out, key, index, (3,)).astype(np.float64)
        if "reported" not in heads:
            raise ValueError(f"outputs: expected 'cobb_angles' [B, 3] degrees, got keys {sorted(out)}")
        disagreement = None
        if "consistency" in out:  # the SavedModel output's name (the serving contract keeps it)
            disagreement = float(np.asarray(out["consistency"]).reshape(-1)[index])
        elif "image" in heads and "segmentation" in heads:
            disagreement = float(np.mean(np.abs(heads["image"] - heads["segmentation"])))

        curves, vertebrae, visible, reported_head = (), None, None, "regression"
        if "vertebra_landmarks" in out:
            vertebrae = letterbox.to_original(_row(out, "vertebra_landmarks", index, (4 * N_VERTEBRAE, 2)))
        if "vertebra_visible" in out:
            visible = _row(out, "vertebra_visible", index, (N_VERTEBRAE,)) > 0.5
        if "geometry" in heads and "end_vertebrae" in out:
            if np.array_equal(heads["geometry"], heads["reported"]):
                reported_head = "geometry"
            elif "segmentation" in heads and np.allclose(
                    0.5 * (heads["geometry"] + heads["segmentation"]), heads["reported"], atol=1e-3):
                reported_head = "fused"
        intervals = None
        if "cobb_angles_lower" in out and "cobb_angles_upper" in out:
            intervals = np.stack([_row(out, "cobb_angles_lower", index, (3,)),
                                  _row(out, "cobb_angles_upper", index, (3,))], axis=1).astype(np.float64)
        if reported_head != "regression":
            ends = _row(out, "end_vertebrae", index, (3, 2)).astype(int)
            spans = [None] * 3 if intervals is None else [
                tuple(float(b) for b in row) if np.all(np.isfinite(row)) else None for row in intervals]
            lines = heads["geometry"] if reported_head == "fused" else [None] * 3
            curves = tuple(Curve(n, float(a), int(u), int(lo), span, role,
                                 None if drawn is None else float(drawn))
                           for n, a, (u, lo), span, role, drawn in zip(ANGLE_NAMES, heads["reported"], ends, spans,
                                                                       curve_roles(ends), lines))
        labels = out["vertebra_labels"][index].astype(np.uint8) if "vertebra_labels" in out else None
        attention = out["attention_map"][index].astype(np.float32) if "attention_map" in out else None
        score = reason = None
        if "measurable_score" in out:
            score = float(np.asarray(out["measurable_score"]).reshape(-1)[index])
        if "measurable_reason" in out:
            reason = np.asarray(out["measurable_reason"]).reshape(-1)[index]
            reason = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
        return cls(heads, reported_head, curves, vertebrae, visible, disagreement, letterbox, labels, attention,
                   score, reason or "", intervals)


def _row(out: Mapping, key: str, index: int, shape: tuple) -> np.ndarray:
    a = np.asarray(out[key])
    if a.ndim != len(shape) + 1 or tuple(a.shape[1:]) != shape or index >= a.shape[0]:
        raise ValueError(f"output {key!r}: expected shape [B, {', '.join(map(str, shape))}] with B > {index}, "
                         f"got {a.shape}")
    return a[index]
