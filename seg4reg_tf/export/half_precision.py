"""Store a Keras model's float32 weights as float16 in a SavedModel, computing in float32."""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

FLOAT16_MAX = float(np.finfo(np.float16).max)


class HalfPrecisionWeights(tf.Module):
    """float16 copies of `model`'s float32 variables, read back as float32 inside `scope()`.

    Tracked by an export (`weights` is the variable collection), they replace the model's own
    variables in the traced graph: the SavedModel's variables/ halves, the arithmetic stays float32,
    and every weight moves by at most its float16 rounding (2^-11 relative). Variables of other
    dtypes are left to the model.

    Raises:
        ValueError naming the variable whose values exceed the float16 range (|x| > 65504).
    """

    def __init__(self, model: keras.Model):
        super().__init__(name="half_precision_weights")
        self._pairs = []
        for variable in model.variables:
            if variable.dtype != "float32":
                continue
            value = np.asarray(variable.numpy())
            if np.abs(value).max(initial=0.0) > FLOAT16_MAX:
                raise ValueError(f"{variable.path}: values up to {np.abs(value).max():.4g} exceed the float16 "
                                 f"range (|x| <= {FLOAT16_MAX:g}); export it with float32 weights")
            self._pairs.append((variable, tf.Variable(value.astype(np.float16), trainable=False)))
        self.weights = [half for _, half in self._pairs]

    def scope(self) -> keras.StatelessScope:
        """Inside a traced function: model calls in this scope read the float16 copies, cast to float32."""
        return keras.StatelessScope(state_mapping=[(v, tf.cast(half, tf.float32)) for v, half in self._pairs])
