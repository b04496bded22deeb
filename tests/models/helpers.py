"""Tiny shared fixtures for the models tests (64 x 32 inputs, width 4, batch 2)."""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from seg4reg_tf.models import ModelConfig  # noqa: E402

H, W = 64, 32
TINY = dict(reg_width=4, reg_depth=3, seg_width=4, seg_depth=2)


def tiny_config(**kw) -> ModelConfig:
    return ModelConfig(**{**TINY, **kw})


def spine_batch(n=4, seed=0):
    """Images with a bright vertical band of 'vertebrae' and matching label maps + angles."""
    rng = np.random.default_rng(seed)
    x = (0.1 * rng.random((n, H, W, 1))).astype("float32")
    labels = np.zeros((n, H, W), "int32")
    for i in range(n):
        c = 10 + 4 * i
        for v in range(6):
            r0 = 6 + 9 * v
            labels[i, r0:r0 + 6, c:c + 8] = v + 1
            x[i, r0:r0 + 6, c:c + 8, 0] += 0.8
    angles = np.array([[40.0, 20.0, 15.0], [25.0, 10.0, 12.0], [60.0, 30.0, 28.0], [12.0, 6.0, 5.0]],
                      "float32")[:n]
    return x, labels, angles


def tiny_dataset(n=4, batch=2, seed=0):
    x, labels, angles = spine_batch(n, seed)
    return tf.data.Dataset.from_tensor_slices(({"image": x}, {"angles": angles, "labels": labels})).batch(batch)
