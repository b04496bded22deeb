"""Tiny SavedModels for the serving tests (TF Serving layout, signatures like the real export).

`serving_default`: `image_bytes` tf.string [B] (PNG/JPEG) -> `cobb_angles` float32 [B, 3]
(= gain * mean intensity in [0, 1] * [10, 20, 30]), `vertebra_labels` uint8 [B, 16, 8]
(3 where the resized pixel > 0.5), `batch_size` int32 [B] (the size of the batch the graph ran on:
shows server-side batching). `predict_image`: `image` float32 [B, 16, 8, 1] -> the same outputs.
"""
from __future__ import annotations

import os
import socket

import numpy as np
import tensorflow as tf

H, W = 16, 8


class TinyModel(tf.Module):
    def __init__(self, gain: float) -> None:
        super().__init__()
        self.gain = tf.Variable(gain, dtype=tf.float32)

    def _head(self, images):
        mean = tf.reduce_mean(images, axis=[1, 2, 3])
        angles = tf.stack([mean * 10.0, mean * 20.0, mean * 30.0], axis=-1) * self.gain
        labels = tf.cast(images[..., 0] > 0.5, tf.uint8) * 3
        b = tf.shape(images)[0]
        return {"cobb_angles": angles, "vertebra_labels": labels, "batch_size": tf.fill([b], b)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve(self, image_bytes):
        def one(data):
            img = tf.io.decode_image(data, channels=1, expand_animations=False)
            img.set_shape([None, None, 1])
            return tf.image.resize(tf.cast(img, tf.float32) / 255.0, [H, W])

        images = tf.map_fn(one, image_bytes, fn_output_signature=tf.TensorSpec([H, W, 1], tf.float32))
        return self._head(images)

    @tf.function(input_signature=[tf.TensorSpec([None, H, W, 1], tf.float32, name="image")])
    def predict_image(self, image):
        return self._head(image)


def save_version(base: str, version: int, gain: float) -> str:
    """Write BASE/<version>/ atomically (saved to a temp dir, then renamed)."""
    os.makedirs(base, exist_ok=True)
    tmp = os.path.join(base, f".tmp-{version}")
    model = TinyModel(gain)
    tf.saved_model.save(model, tmp, signatures={"serving_default": model.serve,
                                                "predict_image": model.predict_image})
    final = os.path.join(base, str(version))
    os.rename(tmp, final)
    return final


def png(image: np.ndarray) -> bytes:
    """uint8 [H, W] -> PNG bytes."""
    return tf.io.encode_png(image[..., None].astype(np.uint8)).numpy()


def half_image(h: int = 32, w: int = 16) -> np.ndarray:
    """Left half 255, right half 0: resized to 16 x 8 exactly half ones -> angles gain * [5, 10, 15]."""
    img = np.zeros((h, w), np.uint8)
    img[:, : w // 2] = 255
    return img


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
