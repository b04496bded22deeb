"""Calibrated intervals per Cobb angle: split conformal prediction normalised by a difficulty score.

For angle k of an image with outputs x: sigma_k(x) = max(w_k . [1, f_k(x)], floor_k), a difficulty score
linear in features f_k (FEATURES, all from the model's own outputs), and

    cobb_angles_lower = max(angle_k - q_k sigma_k(x), 0),  cobb_angles_upper = angle_k + q_k sigma_k(x)

with q_k the split-conformal quantile of |error| / sigma on calibration X-rays the fit never saw: the
interval holds the true angle with probability >= `level` for films like those (exchangeability).
A film that is not measurable (`measurable_score` < 0.5) gets NaN bounds: no interval, never a narrow one.
`AngleIntervals` carries the constants (fitted by `benchmarks/interval_calibration.py`, shipped in the
SavedModel graph and in `assets.extra/intervals.json`); the functions are TensorFlow ops, so the same code
runs in the exported graph and in the calibration.
"""
from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import tensorflow as tf

ANGLES = ("PT", "MT", "TL")
# per angle: |geometry - segmentation head| deg, |image head - answer| deg, the geometry head's tilt
# roughness (mean |second difference| of the 17 tilts, deg), vertebrae not found (count), 1 - measurable_score,
# the answer itself (deg)
FEATURES = ("heads", "image", "roughness", "missing", "unsure", "angle")
REQUIRED_OUTPUTS = ("cobb_angles", "cobb_angles_image", "cobb_angles_segmentation", "cobb_angles_geometry",
                    "vertebra_tilts", "vertebra_visible", "measurable_score")
OUTPUTS = ("cobb_angles_lower", "cobb_angles_upper")


@dataclasses.dataclass(frozen=True)
class AngleIntervals:
    """The constants of the intervals: `weights` [3][1 + len(FEATURES)] (bias first), `floor` [3] deg,
    `q` [3] (conformal quantiles), nominal `level` in (0, 1), and `fitted` (how and on what, for the card)."""

    weights: tuple
    floor: tuple
    q: tuple
    level: float = 0.9
    features: tuple = FEATURES
    fitted: str = ""

    def __post_init__(self):
        if tuple(self.features) != FEATURES:
            raise ValueError(f"intervals.features: expected {list(FEATURES)}, got {list(self.features)}")
        w = np.asarray(self.weights, dtype=np.float64)
        if w.shape != (3, 1 + len(FEATURES)) or not np.all(np.isfinite(w)):
            raise ValueError(f"intervals.weights: expected 3 x {1 + len(FEATURES)} finite numbers, got shape {w.shape}")
        for name in ("floor", "q"):
            v = np.asarray(getattr(self, name), dtype=np.float64)
            if v.shape != (3,) or not np.all(np.isfinite(v)) or np.any(v <= 0):
                raise ValueError(f"intervals.{name}: expected 3 positive finite numbers, got {getattr(self, name)!r}")
        if not 0.0 < self.level < 1.0:
            raise ValueError(f"intervals.level: expected a coverage in (0, 1), got {self.level!r}")
        object.__setattr__(self, "weights", tuple(tuple(float(x) for x in row) for row in w))
        object.__setattr__(self, "floor", tuple(float(x) for x in self.floor))
        object.__setattr__(self, "q", tuple(float(x) for x in self.q))
        object.__setattr__(self, "features", tuple(self.features))

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = "intervals") -> "AngleIntervals":
        """Parse `to_json`'s text; ValueError naming `source` and the field."""
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{source}: not JSON ({err})") from None
        if not isinstance(raw, dict):
            raise ValueError(f"{source}: expected a JSON object")
        unknown = set(raw) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"{source}: unknown field(s) {sorted(unknown)}")
        try:
            return cls(**raw)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{source}: {err}") from None


def read(source) -> AngleIntervals:
    """`AngleIntervals` from a JSON file path (any TensorFlow filesystem) or JSON text."""
    from seg4reg_tf import fileio

    text = str(source)
    if not text.lstrip().startswith("{"):
        try:
            return AngleIntervals.from_json(fileio.read_text(text), source=text)
        except FileNotFoundError:
            raise ValueError(f"intervals: {text}: no such file") from None
    return AngleIntervals.from_json(text)


def difficulty_features(outputs: dict) -> tf.Tensor:
    """float32 [B, 3, len(FEATURES)] from the model outputs (REQUIRED_OUTPUTS; KeyError naming one missing)."""
    for key in REQUIRED_OUTPUTS:
        if key not in outputs:
            raise KeyError(f"intervals need the model output {key!r}")
    o = {k: tf.cast(outputs[k], tf.float32) for k in REQUIRED_OUTPUTS}
    answer = o["cobb_angles"]
    tilts = o["vertebra_tilts"]
    rough = tf.reduce_mean(tf.abs(tilts[:, 2:] - 2.0 * tilts[:, 1:-1] + tilts[:, :-2]), axis=1)
    missing = tf.reduce_sum(tf.cast(o["vertebra_visible"] < 0.5, tf.float32), axis=1)
    unsure = 1.0 - tf.reshape(o["measurable_score"], [-1])
    per_image = tf.stack([rough, missing, unsure], axis=1)[:, None, :] * tf.ones_like(answer)[..., None]
    return tf.concat([tf.abs(o["cobb_angles_geometry"] - o["cobb_angles_segmentation"])[..., None],
                      tf.abs(o["cobb_angles_image"] - answer)[..., None], per_image, answer[..., None]], axis=2)


def sigma(intervals: AngleIntervals, features: tf.Tensor) -> tf.Tensor:
    """float32 [B, 3] difficulty scale (deg) of `difficulty_features`' [B, 3, F]."""
    w = tf.constant(intervals.weights, tf.float32)  # [3, 1 + F]
    fit = w[:, 0] + tf.reduce_sum(features * w[:, 1:], axis=2)
    return tf.maximum(fit, tf.constant(intervals.floor, tf.float32))


def bounds(intervals: AngleIntervals, outputs: dict) -> dict[str, tf.Tensor]:
    """{"cobb_angles_lower", "cobb_angles_upper"}: float32 [B, 3] deg, NaN where not measurable."""
    answer = tf.cast(outputs["cobb_angles"], tf.float32)
    half = tf.constant(intervals.q, tf.float32) * sigma(intervals, difficulty_features(outputs))
    ok = (tf.reshape(tf.cast(outputs["measurable_score"], tf.float32), [-1]) >= 0.5)[:, None] & tf.ones_like(
        answer, dtype=tf.bool)
    nan = tf.fill(tf.shape(answer), math.nan)
    return {"cobb_angles_lower": tf.identity(tf.where(ok, tf.maximum(answer - half, 0.0), nan),
                                             name="cobb_angles_lower"),
            "cobb_angles_upper": tf.identity(tf.where(ok, answer + half, nan), name="cobb_angles_upper")}


def conformal_quantile(scores, level: float) -> float:
    """The split-conformal quantile: the ceil((n + 1) level)-th smallest score (inf when n is too small)."""
    scores = np.sort(np.asarray(scores, dtype=np.float64))
    k = math.ceil((len(scores) + 1) * level)
    return float(scores[k - 1]) if k <= len(scores) else math.inf

