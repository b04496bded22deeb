"""The ROI enhancement gate: R's attention map re-weights a decoder feature map of S."""
from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="seg4reg_tf")
class RoiGate(keras.layers.Layer):
    """`G * (1 + up(A))`: G [B, H, W, C] decoder features, A [B, h, w] attention in [0, 1].

    `up` is a bilinear resize of A to G's spatial size; A = 0 leaves G unchanged, A = 1 doubles it.
    With `stop_gradient=True` (default) no gradient flows from S back into R through A.

    Args:
        stop_gradient: cut the gradient through the attention input.
    """

    def __init__(self, stop_gradient: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.stop_gradient = bool(stop_gradient)

    def call(self, features, attention):
        if len(attention.shape) != 3:
            raise ValueError(f"RoiGate: attention must be [B, h, w], got shape {attention.shape}")
        size = tuple(features.shape[1:3])
        if None in size:
            size = tuple(ops.shape(features)[1:3])
        up = ops.image.resize(ops.expand_dims(ops.cast(attention, features.dtype), -1), size,
                              interpolation="bilinear")
        if self.stop_gradient:
            up = ops.stop_gradient(up)
        return features * (1.0 + up)

    def compute_output_shape(self, features_shape, attention_shape):
        return features_shape

    def get_config(self):
        return {**super().get_config(), "stop_gradient": self.stop_gradient}
