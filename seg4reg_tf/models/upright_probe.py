"""Is the film upright? A linear probe on a thumbnail of the model input, fitted in closed form."""
from __future__ import annotations

import keras
import numpy as np
from keras import ops

THUMBNAIL = (16, 8)  # (rows, columns) of the thumbnail the probe reads
L2 = 1000.0  # ridge penalty on the standardised thumbnail pixels


@keras.saving.register_keras_serializable(package="seg4reg_tf")
class UprightProbe(keras.layers.Layer):
    """`upright_margin` [B] float32 of model inputs [B, H, W, 1] in [0, 1]: > 0 upright, < 0 upside down
    (rotated 180 deg or mirrored top to bottom).

    The input is shrunk to a 16 x 8 thumbnail (antialiased), each thumbnail standardised (zero mean,
    unit standard deviation: exposure does not matter), each pixel standardised over the fitting set,
    and a ridge regression on targets +1 (upright, and mirrored left to right) / -1 (rotated 180 deg, and
    mirrored top to bottom) gives the margin: where the bright pelvis, the dark lungs and the shoulders
    lie is what tells. Its weights are not trained by gradient descent: `fit` sets them in closed form
    from training images (`fit_upright_probe`). Before `fit` (`fitted` = 0) the margin is +1 for every image.
    """

    def __init__(self, **kwargs):
        kwargs["dtype"] = "float32"
        kwargs["trainable"] = False
        super().__init__(**kwargs)
        n = THUMBNAIL[0] * THUMBNAIL[1]
        self.mean = self.add_weight(name="mean", shape=(n,), initializer="zeros", trainable=False)
        self.scale = self.add_weight(name="scale", shape=(n,), initializer="ones", trainable=False)
        self.kernel = self.add_weight(name="kernel", shape=(n,), initializer="zeros", trainable=False)
        self.bias = self.add_weight(name="bias", shape=(), initializer="zeros", trainable=False)
        self.fitted = self.add_weight(name="fitted", shape=(), initializer="zeros", trainable=False)

    @staticmethod
    def thumbnails(images):
        """float32 [B, 16 * 8]: each image's thumbnail, standardised per image."""
        t = ops.image.resize(ops.cast(images, "float32"), THUMBNAIL, interpolation="bilinear", antialias=True)
        t = ops.reshape(t, (-1, THUMBNAIL[0] * THUMBNAIL[1]))
        t = t - ops.mean(t, axis=1, keepdims=True)
        return t / (ops.std(t, axis=1, keepdims=True) + 1e-6)

    def call(self, images):
        z = (self.thumbnails(images) - self.mean) / self.scale
        margin = ops.sum(z * self.kernel, axis=1) + self.bias
        return ops.where(self.fitted > 0, margin, ops.ones_like(margin))

    def fit(self, images: np.ndarray) -> None:
        """Fit on upright model inputs float [N, H, W, 1] (`fit_upright_probe`)."""
        for var, value in zip((self.mean, self.scale, self.kernel, self.bias), fit_upright_probe(images)):
            var.assign(value)
        self.fitted.assign(1.0)


def orientations(images: np.ndarray) -> dict[str, np.ndarray]:
    """The four views of upright images [N, H, W, 1]: "upright", "mirrored" (left-right), "rotated"
    (180 deg) and "flipped" (top-bottom)."""
    return {"upright": images, "mirrored": images[:, :, ::-1], "rotated": images[:, ::-1, ::-1],
            "flipped": images[:, ::-1]}


def fit_upright_probe(images: np.ndarray, l2: float = L2):
    """(mean, scale, kernel [128], bias) of the ridge regression described in `UprightProbe`, fitted on
    the four views (`orientations`) of upright model inputs float [N, H, W, 1] in [0, 1]."""
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or images.shape[-1] != 1 or len(images) < 2:
        raise ValueError(f"upright probe: expected at least 2 images float [N, H, W, 1], got shape {images.shape}")
    views = orientations(images)
    x = np.concatenate([np.asarray(UprightProbe.thumbnails(v)) for v in views.values()]).astype(np.float64)
    n = len(images)
    y = np.concatenate([np.ones(2 * n), -np.ones(2 * n)])
    mean, scale = x.mean(0), x.std(0) + 1e-6
    z = (x - mean) / scale
    kernel = np.linalg.solve(z.T @ z + l2 * np.eye(z.shape[1]), z.T @ y)
    bias = float(np.mean(y - z @ kernel))
    return mean.astype(np.float32), scale.astype(np.float32), kernel.astype(np.float32), np.float32(bias)


def upright_errors(probe: UprightProbe, images: np.ndarray) -> dict[str, int]:
    """{view: images whose margin has the wrong sign} for the four `orientations` of upright images."""
    out = {}
    for view, v in orientations(np.asarray(images, np.float32)).items():
        margin = np.asarray(probe(v))
        out[view] = int(np.sum(margin <= 0) if view in ("upright", "mirrored") else np.sum(margin >= 0))
    return out
