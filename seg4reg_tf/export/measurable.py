"""Can this image be measured? A per-image score from what every model variant already produces.

Criteria (thresholds in `THRESHOLDS`, calibrated on the 96 validation X-rays with the reference
model, BENCHMARKS.md "Reliability"); a criterion whose input a variant lacks is skipped:
- `contrast`: standard deviation of the decoded image's grey values in [0, 1] (blank images ~ 0),
- `saturated`: fraction of pixels at >= 0.99 or <= 0.01 (over- / under-exposed or blank),
- `upright`: `upright_margin` of a model with an upright check (`models.upright_probe`; < 0: the film is
  upside down: rotated 180 deg or mirrored top to bottom),
- `vertebrae`: vertebra labels (of 17) covering at least `min_vertebra_area` of the model frame in
  `vertebra_labels` (no spine, or only part of one),
- `disagreement`: mean |R(image) - R(segmentation)| in degrees (`consistency`).

Each criterion gives a sub-score `sigmoid((value - threshold) / width)` oriented so that > 0.5
passes; `measurable_score` float32 [B] in (0, 1) is their minimum, the image is measurable when it is
>= 0.5, and `measurable_reason` tf.string [B] names the first failing criterion in the order above
("" when measurable).
Pure TensorFlow ops: the same code runs inside the exported SavedModel and in `seg4reg predict`.
"""
from __future__ import annotations

import tensorflow as tf

# value that must be exceeded (">") or not exceeded ("<"), sigmoid width, reason text
THRESHOLDS = {
    "contrast": (">", 0.04, 0.01, "blank or featureless image (grey-value std {value:.3f} < {threshold})"),
    "saturated": ("<", 0.60, 0.05, "saturated image ({value:.0%} of pixels black or white)"),
    "upright": (">", 0.0, 0.05, "the film looks upside down (upright margin {value:.2f} < 0): turn it the right "
                "way up"),
    "vertebrae": (">", 9.5, 1.0, "no spine found: {value:.0f} of 17 vertebrae segmented"),
    "disagreement": ("<", 20.0, 2.0, "the angle heads disagree by {value:.1f} deg (> {threshold} deg)"),
}
MIN_VERTEBRA_AREA = 0.0008  # fraction of the model frame a label must cover to count as found
STATS_SIZE = (256, 256)  # image statistics on a nearest-neighbour resample of this size
OUTPUTS = ("measurable_score", "measurable_reason")


def image_statistics(image: tf.Tensor) -> tf.Tensor:
    """float32 [2] (contrast, saturated) of one decoded grey image float [h, w] or [h, w, 1] in [0, 1]."""
    image = tf.convert_to_tensor(image, tf.float32)
    if image.shape.rank == 2:
        image = image[..., None]
    small = tf.image.resize(image, STATS_SIZE, method="nearest")
    std = tf.math.reduce_std(small)
    saturated = tf.reduce_mean(tf.cast((small >= 0.99) | (small <= 0.01), tf.float32))
    return tf.stack([std, saturated])


def statistics_dict(stats: tf.Tensor) -> dict[str, tf.Tensor]:
    """{"contrast": [B], "saturated": [B]} from `image_statistics` rows stacked to [B, 2]."""
    stats = tf.convert_to_tensor(stats, tf.float32)
    return {"contrast": stats[:, 0], "saturated": stats[:, 1]}


def model_input_statistics(images: tf.Tensor) -> dict[str, tf.Tensor]:
    """{"contrast": [B]} of already letterboxed model inputs float [B, H, W, 1] (`predict_image`).

    The letterbox padding is unknown there, so the saturation criterion is left out."""
    images = tf.convert_to_tensor(images, tf.float32)
    return {"contrast": tf.math.reduce_std(images, axis=[1, 2, 3])}


def vertebra_count(labels: tf.Tensor) -> tf.Tensor:
    """float32 [B]: labels 1..17 covering >= MIN_VERTEBRA_AREA of the frame, of uint8/int [B, H, W] maps."""
    labels = tf.cast(labels, tf.int32)
    one_hot = tf.one_hot(labels, 18, dtype=tf.float32)  # [B, H, W, 18]
    area = tf.reduce_mean(one_hot, axis=[1, 2])[:, 1:]  # [B, 17] fraction of the frame
    return tf.reduce_sum(tf.cast(area >= MIN_VERTEBRA_AREA, tf.float32), axis=1)


def features(stats: dict, outputs: dict) -> dict[str, tf.Tensor]:
    """{criterion: float32 [B]} from image statistics {"contrast", "saturated"?: [B]} and the model
    outputs the variant has."""
    out = {k: tf.cast(v, tf.float32) for k, v in stats.items()}
    if "upright_margin" in outputs:
        out["upright"] = tf.reshape(tf.cast(outputs["upright_margin"], tf.float32), [-1])
    if "vertebra_labels" in outputs:
        out["vertebrae"] = vertebra_count(outputs["vertebra_labels"])
    if "consistency" in outputs:
        out["disagreement"] = tf.reshape(tf.cast(outputs["consistency"], tf.float32), [-1])
    elif "cobb_angles_image" in outputs and "cobb_angles_segmentation" in outputs:
        diff = tf.cast(outputs["cobb_angles_image"], tf.float32) - tf.cast(outputs["cobb_angles_segmentation"],
                                                                             tf.float32)
        out["disagreement"] = tf.reduce_mean(tf.abs(diff), axis=-1)
    return out


def _format(template: str, value, threshold) -> tf.Tensor:
    """The reason text per image (tf.string [B]) with `{value...}` / `{threshold}` filled in."""
    # tf.strings.format has no format specs: format the numbers here with as_string.
    head, _, rest = template.partition("{value")
    spec, _, tail = rest.partition("}")
    spec = spec.lstrip(":")
    if spec.endswith("%"):
        text = tf.strings.as_string(value * 100.0, precision=int(spec[1:-1] or 0)) + "%"
    else:
        text = tf.strings.as_string(value, precision=int(spec[1:-1] or 0) if spec else 3)
    return head + text + tail.replace("{threshold}", f"{threshold:g}")


def assess(stats: dict, outputs: dict) -> dict[str, tf.Tensor]:
    """{"measurable_score": float32 [B], "measurable_reason": tf.string [B]} (see the module docstring)."""
    feats = features(stats, outputs)
    names = [n for n in THRESHOLDS if n in feats]
    subs, reasons = [], []
    for name in names:
        direction, threshold, width, template = THRESHOLDS[name]
        value = tf.where(tf.math.is_finite(feats[name]), feats[name], tf.fill(tf.shape(feats[name]), float("nan")))
        margin = (value - threshold) / width if direction == ">" else (threshold - value) / width
        sub = tf.where(tf.math.is_nan(margin), tf.zeros_like(margin), tf.sigmoid(margin))  # NaN fails
        subs.append(sub)
        reasons.append(_format(template, tf.where(tf.math.is_finite(value), value, tf.zeros_like(value)), threshold))
    subs = tf.stack(subs, axis=1)  # [B, K]
    score = tf.reduce_min(subs, axis=1)
    # the reason is the first failing criterion in THRESHOLDS order (a blank image is "blank", not "no spine")
    first = tf.argmax(tf.cast(subs < 0.5, tf.int32), axis=1, output_type=tf.int32)
    reason = tf.gather(tf.stack(reasons, axis=1), first, batch_dims=1)
    reason = tf.where(score >= 0.5, tf.fill(tf.shape(reason), ""), reason)
    return {"measurable_score": tf.identity(score, name="measurable_score"),
            "measurable_reason": tf.identity(reason, name="measurable_reason")}
