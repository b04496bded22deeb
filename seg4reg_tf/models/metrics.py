"""Keras metrics the models log, each beside its pure NumPy twin in `seg4reg_tf.geometry` (MONAI style).

| Keras metric (accumulates over an epoch) | pure twin |
|---|---|
| `SMAPE` (percent, mean over images) | `geometry.smape` |
| `AngleMAE` (degrees, one angle) | `geometry.angle_mae` |
| `PooledDice` (counts pooled over all images) | `geometry.vertebra_dice` on the stacked label maps |
"""
from __future__ import annotations

import keras
from keras import ops

from seg4reg_tf.geometry.cobb import ANGLE_NAMES
from seg4reg_tf.geometry.masks import N_CLASSES


class _MeanPerImage(keras.metrics.Metric):
    """Running (optionally weighted) mean of one value per image; subclasses give `values(y_true, y_pred)`."""

    def __init__(self, name, dtype="float32", **kwargs):
        super().__init__(name=name, dtype=dtype, **kwargs)
        self.total = self.add_variable(shape=(), initializer="zeros", name="total", dtype="float64")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count", dtype="float64")

    def values(self, y_true, y_pred):
        raise NotImplementedError

    def update_state(self, y_true, y_pred, sample_weight=None):
        v = self.values(y_true, y_pred)
        if sample_weight is not None:
            w = ops.cast(ops.reshape(sample_weight, (-1,)), "float64")
            self.total.assign_add(ops.sum(v * w))
            self.count.assign_add(ops.sum(w))
        else:
            self.total.assign_add(ops.sum(v))
            self.count.assign_add(ops.cast(ops.shape(v)[0], "float64"))

    def result(self):
        return ops.cast(ops.where(self.count > 0, self.total / ops.maximum(self.count, 1.0), 0.0), self.dtype)

    def reset_state(self):
        self.total.assign(0.0)
        self.count.assign(0.0)


def smape_per_image_ops(y_true, y_pred):
    """float64 [B] percent: `100 * sum|p - t| / sum(p + t)` per image of `[B, 3]` angles (0/0 = 0);
    differentiable in `y_pred` (the angle loss's "smape" form uses it)."""
    t = ops.cast(ops.reshape(y_true, (-1, 3)), "float64")
    p = ops.cast(ops.reshape(y_pred, (-1, 3)), "float64")
    num = ops.sum(ops.abs(p - t), axis=1)
    den = ops.sum(p + t, axis=1)
    return 100.0 * ops.where(ops.equal(den, 0.0), ops.zeros_like(num), num / ops.where(ops.equal(den, 0.0), 1.0, den))


@keras.saving.register_keras_serializable(package="seg4reg_tf")
class SMAPE(_MeanPerImage):
    """Official AASCE SMAPE in percent, accumulated over images.

    `update_state(y_true, y_pred)` takes `[B, 3]` angles in degrees; per image
    `100 * sum|p - t| / sum(p + t)` (0/0 = 0), averaged over all images seen.
    Pure twin: `seg4reg_tf.geometry.smape`.
    """

    def __init__(self, name="smape", dtype="float32", **kwargs):
        super().__init__(name=name, dtype=dtype, **kwargs)

    def values(self, y_true, y_pred):
        return smape_per_image_ops(y_true, y_pred)


@keras.saving.register_keras_serializable(package="seg4reg_tf")
class AngleMAE(_MeanPerImage):
    """Mean absolute error in degrees of one angle (`angle` = 0 PT, 1 MT, 2 TL) over `[B, 3]` inputs.

    Pure twin: `seg4reg_tf.geometry.angle_mae`.
    """

    def __init__(self, angle: int = 0, name=None, dtype="float32", **kwargs):
        if angle not in (0, 1, 2):
            raise ValueError(f"angle: expected 0, 1 or 2 (PT, MT, TL), got {angle!r}")
        super().__init__(name=name or f"mae_{ANGLE_NAMES[angle].lower()}", dtype=dtype, **kwargs)
        self.angle = angle

    def values(self, y_true, y_pred):
        t = ops.cast(ops.reshape(y_true, (-1, 3))[:, self.angle], "float64")
        p = ops.cast(ops.reshape(y_pred, (-1, 3))[:, self.angle], "float64")
        return ops.abs(p - t)

    def get_config(self):
        return {**super().get_config(), "angle": self.angle}


@keras.saving.register_keras_serializable(package="seg4reg_tf")
class PooledDice(keras.metrics.Metric):
    """Mean over the vertebra classes 1..K-1 of 2|P ∩ T| / (|P| + |T|), P = argmax prediction.

    Intersections and sizes are summed per class over every image seen (pooled, not a mean of
    per-image Dice); classes absent from both prediction and truth so far are left out of the mean
    (0 if none is present). Pure twin: `geometry.vertebra_dice` of all label maps stacked.
    `update_state(labels int [B, H, W], probs [B, H, W, K])`.
    """

    def __init__(self, n_classes: int = N_CLASSES, name="dice", dtype="float32", **kwargs):
        super().__init__(name=name, dtype=dtype, **kwargs)
        self.n_classes = int(n_classes)
        k = self.n_classes - 1
        self.inter = self.add_variable(shape=(k,), initializer="zeros", name="inter", dtype="float64")
        self.size = self.add_variable(shape=(k,), initializer="zeros", name="size", dtype="float64")

    def update_state(self, y_true, y_pred, sample_weight=None):
        k = self.n_classes
        pred = ops.one_hot(ops.argmax(y_pred, axis=-1), k, dtype="float64")[..., 1:]
        true = ops.one_hot(ops.cast(y_true, "int32"), k, dtype="float64")[..., 1:]
        pred = ops.reshape(pred, (-1, k - 1))
        true = ops.reshape(true, (-1, k - 1))
        self.inter.assign_add(ops.sum(pred * true, axis=0))
        self.size.assign_add(ops.sum(pred, axis=0) + ops.sum(true, axis=0))

    def result(self):
        present = ops.cast(self.size > 0, "float64")
        dice = 2.0 * self.inter / ops.maximum(self.size, 1.0)
        n = ops.sum(present)
        return ops.cast(ops.where(n > 0, ops.sum(dice * present) / ops.maximum(n, 1.0), 0.0), self.dtype)

    def reset_state(self):
        self.inter.assign(ops.zeros_like(self.inter))
        self.size.assign(ops.zeros_like(self.size))

    def get_config(self):
        return {**super().get_config(), "n_classes": self.n_classes}
