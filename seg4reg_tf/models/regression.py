"""R: the Cobb angle regression network (encoder -> GAP -> Dense(3) -> sigmoid * angle_scale)."""
from __future__ import annotations

import os

import keras
import numpy as np
from keras import layers, ops

from seg4reg_tf.models.blocks import build_densenet_encoder, build_light_encoder
from seg4reg_tf.models.efficientnet_lite import build_efficientnet_lite0


@keras.saving.register_keras_serializable(package="seg4reg_tf")
class RegressionNet(keras.layers.Layer):
    """Cobb angle regressor R with a CAM-friendly GAP + linear head.

    Call on a single-channel input [B, H, W, 1] (image, ground-truth mask or predicted foreground;
    one set of weights) -> dict `features` F [B, h, w, C], `logits` [B, 3], `angles` [B, 3] degrees
    = sigmoid(logits) * angle_scale.

    Args:
        image_shape: (H, W, 1).
        encoder: "light" | "densenet121" | "densenet169" (keras.applications, weights=None) |
            "efficientnet_lite0" (features: its 1280-channel head at stride 32).
        width, depth, norm: the light encoder's base filters, levels and "batch" | "group" norm.
        angle_scale: degrees at sigmoid = 1 (default 180: real angles reach 156).
        angle_prior: initial predicted angles [PT, MT, TL] in degrees (sets the bias), or None.
        dropout: rate on the pooled features before the Dense layer.
        encoder_weights: optional local `.weights.h5` file loaded into the encoder.
        pretrained: efficientnet_lite0 only: load the packaged ImageNet weights now and freeze the
            encoder's BatchNorm statistics (R sees images, masks and predicted masks with one set of
            weights; batch statistics of that mixture, at batch 8, would overwrite ImageNet's).
        load_weights: load `encoder_weights` / the pretrained weights now (False when rebuilding a
            saved model, whose own weights follow).

    Example:
        >>> r = RegressionNet((64, 32, 1), width=4, depth=3)
        >>> r(np.zeros((2, 64, 32, 1), "float32"))["angles"].shape
        TensorShape([2, 3])
    """

    def __init__(self, image_shape, encoder="light", width=16, depth=5, norm="group", angle_scale=180.0,
                 angle_prior=None, dropout=0.0, encoder_weights=None, pretrained=False, load_weights=True,
                 **kwargs):
        super().__init__(**kwargs)
        self.image_shape = tuple(int(s) for s in image_shape)
        self.encoder_kind = encoder
        self.width, self.depth, self.norm = int(width), int(depth), norm
        self.angle_scale = float(angle_scale)
        self.angle_prior = None if angle_prior is None else tuple(float(a) for a in angle_prior)
        self.dropout_rate = float(dropout)
        self.encoder_weights = encoder_weights
        self.pretrained = bool(pretrained)
        if encoder == "light":
            self.encoder = build_light_encoder(self.image_shape, self.width, self.depth, norm,
                                               name=f"{self.name}_light_encoder")
        elif encoder in ("densenet121", "densenet169"):
            self.encoder = build_densenet_encoder(encoder, self.image_shape, name=f"{self.name}_{encoder}")
        elif encoder == "efficientnet_lite0":
            base = build_efficientnet_lite0(self.image_shape, name=f"{self.name}_{encoder}",
                                            pretrained=self.pretrained, load_weights=load_weights)
            self.encoder = keras.Model(base.input, base.output["s32"], name=f"{self.name}_{encoder}_s32")
        else:
            raise ValueError("model.encoder: expected 'light', 'densenet121', 'densenet169' or "
                             f"'efficientnet_lite0', got {encoder!r}")
        if encoder_weights and load_weights:
            if not os.path.isfile(encoder_weights):
                raise ValueError(f"model.encoder_weights: file not found: {encoder_weights!r}")
            try:
                self.encoder.load_weights(encoder_weights)
            except Exception as exc:  # noqa: BLE001 - re-raised with the key named
                raise ValueError(f"model.encoder_weights: cannot load {encoder_weights!r} into the "
                                 f"{encoder} encoder: {exc}") from exc
        self.channels = int(self.encoder.output.shape[-1])
        self.pool = layers.GlobalAveragePooling2D(name="gap")
        self.drop = layers.Dropout(self.dropout_rate, name="dropout")
        self.dense = layers.Dense(3, name="angle_logits")
        self.dense.build((None, self.channels))
        if self.angle_prior is not None:
            p = np.asarray(self.angle_prior, "float64") / self.angle_scale
            self.dense.bias.assign((np.log(p) - np.log1p(-p)).astype("float32"))
        self.built = True

    @property
    def kernel(self):
        """Dense kernel W [C, 3] (used by the CAM)."""
        return self.dense.kernel

    @property
    def bias(self):
        return self.dense.bias

    def features(self, x, training=None):
        """Encoder feature map F [B, h, w, C]."""
        return self.encoder(x, training=training)

    def logits(self, features, training=None):
        """Head logits [B, 3] = Dense(Dropout(GAP(F)))."""
        return self.dense(self.drop(self.pool(features), training=training))

    def to_angles(self, logits):
        """Degrees [B, 3] float32 (also under mixed precision) = sigmoid(logits) * angle_scale."""
        return ops.sigmoid(ops.cast(logits, "float32")) * self.angle_scale

    def call(self, x, training=None):
        if len(x.shape) != 4 or x.shape[-1] != 1:
            raise ValueError(f"RegressionNet: expected input [B, H, W, 1], got shape {x.shape}")
        f = self.features(x, training=training)
        z = self.logits(f, training=training)
        return {"features": f, "logits": z, "angles": self.to_angles(z)}

    @classmethod
    def from_config(cls, config):
        return cls(**{**config, "load_weights": False})

    def get_config(self):
        return {**super().get_config(), "image_shape": list(self.image_shape), "encoder": self.encoder_kind,
                "width": self.width, "depth": self.depth, "norm": self.norm, "angle_scale": self.angle_scale,
                "angle_prior": None if self.angle_prior is None else list(self.angle_prior),
                "dropout": self.dropout_rate, "encoder_weights": self.encoder_weights,
                "pretrained": self.pretrained}

