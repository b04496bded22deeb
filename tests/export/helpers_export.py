"""Test stand-ins for export/serving tests: a tiny "oracle" model, a letterbox preprocess, synthetic spines.

The oracle model's segmentation is exact for images whose grey value encodes the label (label / 17),
so the predicted labels (and the Cobb geometry fitted from them) are known in advance.
"""
from __future__ import annotations

import dataclasses

import cv2
import keras
import numpy as np
import tensorflow as tf
from keras import ops

from seg4reg_tf.geometry import N_CLASSES, landmarks_to_label_map

H, W = 128, 64


@dataclasses.dataclass
class StandInDataConfig:
    image_size: tuple = (H, W)
    clahe: bool = False


def standin_decode(data):
    """scalar JPEG/PNG bytes -> float32 [h, w, 1] in [0, 1] (16-bit PNG exact)."""
    return tf.io.decode_image(data, channels=1, dtype=tf.float32, expand_animations=False)


def standin_preprocess(image, data_cfg):
    """Letterbox to data_cfg.image_size keeping the aspect ratio, centre padding.

    Returns (image [H, W, 1], transform [5] = (scale, pad_top, pad_left, orig_h, orig_w))."""
    th, tw = data_cfg.image_size
    hw = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = tf.minimum(th / hw[0], tw / hw[1])
    nh = tf.cast(tf.round(hw[0] * scale), tf.int32)
    nw = tf.cast(tf.round(hw[1] * scale), tf.int32)
    resized = tf.image.resize(image, tf.stack([nh, nw]), method="bilinear")
    pad_top = (th - nh) // 2
    pad_left = (tw - nw) // 2
    out = tf.image.pad_to_bounding_box(resized, pad_top, pad_left, th, tw)
    transform = tf.stack([scale, tf.cast(pad_top, tf.float32), tf.cast(pad_left, tf.float32), hw[0], hw[1]])
    return out, transform


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
    keras.utils.set_random_seed(seed)
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


def synthetic_landmarks(h: int, w: int, amplitude: float = 0.12, phase: float = 0.0) -> np.ndarray:
    """(68, 2) landmarks of 17 tilted rectangles along a sinusoidal spine in an h x w image."""
    rows = []
    ys = np.linspace(0.12 * h, 0.88 * h, 17)
    step = ys[1] - ys[0]
    for y in ys:
        t = (y / h) * 2 * np.pi + phase
        cx = w / 2 + amplitude * w * np.sin(t)
        slope = amplitude * w * np.cos(t) * 2 * np.pi / h  # dx/dy of the centre line
        theta = np.arctan(slope)  # endplate tilt follows the curve
        half_w, half_h = 0.18 * w, 0.36 * step
        ux = np.array([np.cos(theta), -np.sin(theta)])  # along the endplate (x right)
        uy = np.array([np.sin(theta), np.cos(theta)])  # down the vertebra
        c = np.array([cx, y])
        rows += [c - half_w * ux - half_h * uy, c + half_w * ux - half_h * uy,
                 c - half_w * ux + half_h * uy, c + half_w * ux + half_h * uy]
    return np.asarray(rows, dtype=np.float64)


def synthetic_spine(h: int, w: int, phase: float = 0.0):
    """(landmarks (68, 2), label map uint8 [h, w]) of a synthetic spine."""
    lm = synthetic_landmarks(h, w, phase=phase)
    return lm, landmarks_to_label_map(lm, h, w)


def encode_labels_jpeg(labels: np.ndarray) -> bytes:
    """8-bit JPEG whose grey value is label * 15 (= label / 17 of 255)."""
    return cv2.imencode(".jpg", (labels.astype(np.uint16) * 15).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 98])[1].tobytes()


def encode_labels_png16(labels: np.ndarray) -> bytes:
    """16-bit PNG whose grey value is label * 3855 (= label / 17 of 65535)."""
    return cv2.imencode(".png", labels.astype(np.uint16) * 3855)[1].tobytes()


def data_config(**kw):
    """The real DataConfig when it exists (tiny size, no CLAHE by default), else the stand-in."""
    kw.setdefault("image_size", (H, W))
    kw.setdefault("clahe", False)
    try:
        from seg4reg_tf.data.config import DataConfig
    except ImportError:
        return StandInDataConfig(**{k: kw[k] for k in ("image_size", "clahe")})
    return DataConfig(**kw)


def pipeline_fns():
    """(decode_fn, preprocess_fn): the project's data.preprocess ones when present, else the stand-ins."""
    try:
        from seg4reg_tf.data.preprocess import decode_image, preprocess
    except ImportError:
        return standin_decode, standin_preprocess
    return decode_image, preprocess


def export_standin(base, version: int = 1, model=None, data_cfg=None, **kw) -> str:
    from seg4reg_tf.export.savedmodel import export_model

    decode_fn, preprocess_fn = pipeline_fns()
    return export_model(
        model if model is not None else oracle_model(),
        data_cfg if data_cfg is not None else data_config(),
        base,
        version,
        decode_fn=decode_fn,
        preprocess_fn=preprocess_fn,
        **kw,
    )
