"""`MeanDice`: mean foreground Dice of hard (argmax) segmentations, accumulated over an epoch."""
from __future__ import annotations

import keras
from keras import ops

from seg4reg_tf.geometry import N_CLASSES


@keras.saving.register_keras_serializable(package="seg4reg_tf")
class MeanDice(keras.metrics.Metric):
    """Mean over the vertebra classes 1..K-1 of 2|P ∩ T| / (|P| + |T|), P = argmax prediction.

    Intersections and sizes are summed per class over every image seen; classes absent from both
    prediction and truth so far are left out of the mean (0 if none is present).
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
