"""The geometry head: per-vertebra tilt and centre from S, and the official Cobb angles of them."""
from __future__ import annotations

import math

import keras
from keras import layers, ops

from seg4reg_tf.geometry.cobb_ops import N_VERTEBRAE, cobb_angles_ops

TILT_UNIT = 45.0  # degrees per unit of the tilt output (keeps the layer's outputs near 1)
MIN_PROB = 0.05  # softmax probabilities below this do not count towards a vertebra (stray mass far away
# would drag its centroid)


def vertebra_landmarks(centres, tilts, sizes):
    """Rectangles as the 68 AASCE landmarks: centres [B, 17, 2] px, tilts [B, 17] degrees (the direction
    of the left -> right vector, y down), sizes [B, 17, 2] (width, height) px -> [B, 68, 2] (TL, TR, BL, BR)."""
    t = tilts * (math.pi / 180.0)
    d = ops.stack([ops.cos(t), ops.sin(t)], axis=-1)  # along the vertebra, left -> right
    nrm = ops.stack([-ops.sin(t), ops.cos(t)], axis=-1)  # down the spine
    hw, hh = sizes[..., :1] / 2.0, sizes[..., 1:] / 2.0
    corners = [centres - hw * d - hh * nrm, centres + hw * d - hh * nrm,
               centres - hw * d + hh * nrm, centres + hw * d + hh * nrm]
    return ops.reshape(ops.stack(corners, axis=2), (-1, 4 * N_VERTEBRAE, 2))


def landmark_geometry(landmarks):
    """True geometry of landmarks [B, 68, 2] px: tilts [B, 17] degrees (left -> right vector of the side
    midpoints, as the official algorithm uses) and centres [B, 17, 2] (mean of the 4 corners)."""
    p = ops.reshape(ops.cast(landmarks, "float32"), (-1, N_VERTEBRAE, 4, 2))
    vec = (p[:, :, 1] + p[:, :, 3]) - (p[:, :, 0] + p[:, :, 2])
    return ops.arctan2(vec[..., 1], vec[..., 0]) * (180.0 / math.pi), ops.mean(p, axis=2)


@keras.saving.register_keras_serializable(package="seg4reg_tf")
class GeometryHead(keras.layers.Layer):
    """Vertebra geometry from S's decoder features and its vertebra softmax.

    1. Soft pooling per vertebra v = T1..L5 with S's probability p_v (values below 0.05 ignored),
       average-pooled to the stride of each decoder map used (`strides`, and G at stride 1): the mean
       of each map over the vertebra and its first moments along x and y (how the features change
       across the vertebra, which is what its tilt is), the centroid (the centre, px), the second
       moments (the width and height along and across the tilt, sqrt(12 variance) as of a uniform
       rectangle) and the mass.
    2. Spine context: 1-D convolutions along the 17 vertebrae (dilations 1, 2, 4, 8, so every
       vertebra sees the whole spine) over those per-vertebra values predict each tilt (degrees).
       A vertebra with mass < `min_mass` px is not visible (cut off, or not found): its tilt comes from
       the context, its centre and size from its visible neighbours (Gaussian weights along the spine).

    Call(features {"g": [B, H, W, C], "s<k>": [B, H/k, W/k, C_k]}, probs [B, H, W, 18]) -> dict
    `vertebra_tilts` [B, 17] degrees, `vertebra_centres` [B, 17, 2] px (x, y) in the model frame,
    `vertebra_sizes` [B, 17, 2] px, `vertebra_visible` [B, 17] float 0/1.
    `answer(geometry, height)` adds `vertebra_landmarks` [B, 68, 2], `cobb_angles_geometry` [B, 3] and
    `end_vertebrae` int32 [B, 3, 2] (the official algorithm on those rectangles, `geometry.cobb_ops`).

    Args:
        context: filters of the 1-D convolutions along the spine.
        strides: the decoder maps pooled besides G ("s<k>" keys of the features).
        min_mass: the soft area (px of the model frame) below which a vertebra counts as not visible.
    """

    def __init__(self, context=128, strides=(4, 8), min_mass=4.0, **kwargs):
        kwargs["dtype"] = "float32"  # sums over every pixel: float32 also under mixed precision
        super().__init__(**kwargs)
        self.context, self.strides, self.min_mass = int(context), tuple(int(k) for k in strides), float(min_mass)
        self.seq = [layers.Conv1D(self.context, 3, padding="same", dilation_rate=r, activation="relu",
                                  dtype="float32", name=f"spine_conv{i}") for i, r in enumerate((1, 2, 4, 8))]
        self.index_embedding = None
        self.tilt = layers.Dense(1, dtype="float32", name="tilt")

    def build(self, feature_channels, probs_shape=None):
        """feature_channels: {"g": C, "s<k>": C_k} channel counts of the feature maps."""
        n_in = 5 + 3 * sum(int(feature_channels[key]) for key in self._keys())
        self.index_embedding = self.add_weight(name="index_embedding", shape=(N_VERTEBRAE, self.context),
                                               initializer="zeros")
        for conv in self.seq:
            conv.build((None, N_VERTEBRAE, n_in))
            n_in = self.context
        self.tilt.build((None, N_VERTEBRAE, self.context))
        self.built = True

    def _keys(self):
        return ["g"] + [f"s{k}" for k in self.strides]

    def call(self, features, probs):
        probs = ops.cast(probs, "float32")
        h, w = probs.shape[1], probs.shape[2]
        p = probs[..., 1:]
        p = ops.where(p >= MIN_PROB, p, ops.zeros_like(p))
        mass = ops.sum(p, axis=(1, 2))  # [B, 17]
        visible = ops.cast(mass >= self.min_mass, "float32")
        per_vertebra, stats = [], None
        for key in self._keys():
            f = ops.cast(features[key], "float32")
            k = h // f.shape[1]
            pk = p if k == 1 else ops.average_pool(p, k, k) * (k * k)
            m = ops.sum(pk, axis=(1, 2))
            wn = pk / (ops.expand_dims(ops.expand_dims(m, 1), 1) + 1e-6)
            ys = ops.reshape((ops.arange(f.shape[1], dtype="float32") + 0.5) * k, (1, -1, 1))
            xs = ops.reshape((ops.arange(f.shape[2], dtype="float32") + 0.5) * k, (1, 1, -1))
            ys, xs = ys + ops.zeros((1, 1, f.shape[2])), xs + ops.zeros((1, f.shape[1], 1))
            cx, cy = ops.einsum("bhwv,ohw->bv", wn, xs), ops.einsum("bhwv,ohw->bv", wn, ys)
            if stats is None:  # full resolution: the vertebra's centre and second moments
                stats = (cx, cy, ops.einsum("bhwv,ohw->bv", wn, xs * xs) - cx * cx,
                         ops.einsum("bhwv,ohw->bv", wn, ys * ys) - cy * cy,
                         ops.einsum("bhwv,ohw->bv", wn, xs * ys) - cx * cy)
            # first moments of the features about the centroid, in units of 10 px
            dx = (xs[..., None] - cx[:, None, None, :]) / 10.0  # [B, h, w, 17]
            dy = (ys[..., None] - cy[:, None, None, :]) / 10.0
            mean = ops.einsum("bhwv,bhwc->bvc", wn, f)
            per_vertebra += [mean, ops.einsum("bhwv,bhwc->bvc", wn * dx, f), ops.einsum("bhwv,bhwc->bvc", wn * dy, f)]
        cx, cy, sxx, syy, sxy = stats
        # (a vertebra with no mass has zero variance: keep sqrt's gradient finite there)
        shape = ops.stack([cx / w, cy / h, ops.sqrt(ops.maximum(sxx, 1e-2)) / 10.0,
                           ops.sqrt(ops.maximum(syy, 1e-2)) / 10.0, visible], axis=-1)
        z = self.seq[0](ops.concatenate([shape, *per_vertebra], axis=-1)) + self.index_embedding
        for conv in self.seq[1:]:
            z = conv(z) + z
        tilts = TILT_UNIT * self.tilt(z)[..., 0]

        t = tilts * (math.pi / 180.0)
        c, s = ops.cos(t), ops.sin(t)
        var_along = c * c * sxx + 2 * c * s * sxy + s * s * syy
        var_across = s * s * sxx - 2 * c * s * sxy + c * c * syy
        sizes = ops.sqrt(12.0 * ops.maximum(ops.stack([var_along, var_across], axis=-1), 1.0 / 12.0))
        centres = ops.stack([cx, cy], axis=-1)
        centres, sizes = (_fill_from_neighbours(v, visible) for v in (centres, sizes))
        return {"vertebra_tilts": tilts, "vertebra_centres": centres, "vertebra_sizes": sizes,
                "vertebra_visible": visible}

    @staticmethod
    def answer(geometry: dict, height) -> dict:
        """Landmarks and official Cobb angles of the geometry (see the class docstring)."""
        lm = vertebra_landmarks(geometry["vertebra_centres"], geometry["vertebra_tilts"], geometry["vertebra_sizes"])
        angles, ends = cobb_angles_ops(lm, height)
        return {**geometry, "vertebra_landmarks": lm, "cobb_angles_geometry": angles, "end_vertebrae": ends}

    def get_config(self):
        return {**super().get_config(), "context": self.context, "strides": list(self.strides),
                "min_mass": self.min_mass}


def _fill_from_neighbours(values, visible, sigma=1.5):
    """values [B, 17, K]: where visible [B, 17] is 0, a Gaussian-weighted mean over the visible ones."""
    idx = ops.arange(N_VERTEBRAE, dtype="float32")
    k = ops.exp(-0.5 * ((idx[:, None] - idx[None, :]) / sigma) ** 2)  # [17, 17]
    weights = k[None] * visible[:, None, :]  # [B, 17 (to), 17 (from)]
    filled = ops.einsum("bij,bjk->bik", weights, values) / (ops.sum(weights, axis=-1, keepdims=True) + 1e-6)
    return ops.where(visible[..., None] > 0, values, filled)
