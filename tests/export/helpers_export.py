"""The oracle model of the export / serving tests and its export.

The oracle model's segmentation is exact for images whose grey value encodes the label (label / 17,
see `tests.fixtures.label_encoded_jpeg` / `label_encoded_png16`), so the predicted labels (and the
Cobb geometry fitted from them) are known in advance.
"""
from __future__ import annotations

import keras
from keras import ops

from seg4reg_tf.export.savedmodel import export_model
from seg4reg_tf.geometry import N_CLASSES
from tests.fixtures import set_seed, tiny_data_config

H, W = ORACLE_SIZE = (128, 64)


class OracleSegmentation(keras.layers.Layer):
    """[B, H, W, 1] in [0, 1] -> [B, H, W, 18] probabilities peaked at round(image * 17)."""

    def call(self, image):
        labels = ops.cast(ops.round(image[..., 0] * (N_CLASSES - 1)), "int32")
        one_hot = ops.one_hot(labels, N_CLASSES)
        return one_hot * 0.9 + 0.1 / N_CLASSES


class NormalisedAttention(keras.layers.Layer):
    """[B, h, w, C] features -> [B, h, w] mean activation divided by its per-image max."""

    def call(self, features):
        a = ops.mean(ops.relu(features), axis=-1)
        return a / (ops.max(a, axis=(1, 2), keepdims=True) + 1e-6)


class MeanAbsDiff(keras.layers.Layer):
    def call(self, a, b):
        return ops.mean(ops.abs(a - b), axis=-1)


class Foreground(keras.layers.Layer):
    def call(self, seg):
        return 1.0 - seg[..., :1]


def oracle_model(image_size=(H, W), seed: int = 0, oracle: bool = True) -> keras.Model:
    """A tiny joint model with the documented dict outputs.

    oracle=True: segmentation = one-hot(round(image * 17)) (exact on label-encoded images, but
    discontinuous); oracle=False: a smooth learned-style softmax conv head (for numeric comparisons).
    """
    set_seed(seed)
    inp = keras.Input((*image_size, 1), name="image")
    if oracle:
        seg = OracleSegmentation(name="segmentation")(inp)
    else:
        seg = keras.layers.Conv2D(N_CLASSES, 3, padding="same", activation="softmax", name="segmentation")(inp)
    conv = keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu")
    pool = keras.layers.GlobalAveragePooling2D()
    dense = keras.layers.Dense(3, activation="sigmoid")
    scale = keras.layers.Rescaling(90.0)

    def regress(x):
        f = conv(x)
        return f, scale(dense(pool(f)))

    feat, ang_img = regress(inp)
    _, ang_seg = regress(Foreground()(seg))
    outputs = {
        "cobb_angles": keras.layers.Identity(name="cobb_angles")(ang_img),
        "cobb_angles_image": keras.layers.Identity(name="cobb_angles_image")(ang_img),
        "cobb_angles_segmentation": keras.layers.Identity(name="cobb_angles_segmentation")(ang_seg),
        "segmentation": seg,
        "attention_map": NormalisedAttention(name="attention_map")(feat),
        "consistency": MeanAbsDiff(name="consistency")(ang_img, ang_seg),
    }
    return keras.Model(inputs={"image": inp}, outputs=outputs)


def export_oracle(base, version: int = 1, model=None, preprocessing=None, **kw) -> str:
    """Export the oracle model (or `model`) through the real `export_model`. A plain Keras model carries
    no input contract, so `preprocessing` is passed explicitly (default: the tiny data config at ORACLE_SIZE)."""
    return export_model(model if model is not None else oracle_model(), base, version,
                        preprocessing=preprocessing if preprocessing is not None
                        else tiny_data_config(image_size=ORACLE_SIZE), **kw)
