"""S: U-Net style vertebra segmentation network with an optional ROI gate before its head."""
from __future__ import annotations

import keras
from keras import layers, ops

from seg4reg_tf.geometry import N_CLASSES
from seg4reg_tf.models.blocks import conv_norm_relu
from seg4reg_tf.models.efficientnet_lite import build_efficientnet_lite0
from seg4reg_tf.models.gate import RoiGate


def build_unet_body(image_shape, width: int, depth: int, norm: str, name: str = "unet_body"):
    """Encoder-decoder: `depth` max-pool levels with filters width * 2**level, nearest upsampling,
    skip concatenation. [B, H, W, 1] -> {"g": decoder features G [B, H, W, width] (one level before the
    head), "s<k>": the decoder's feature map at stride k = 2, 4, ... (up to 2**(depth-1))}."""
    inp = keras.Input(shape=tuple(image_shape), name=f"{name}_input")
    x = conv_norm_relu(inp, width, norm, f"{name}_e0a")
    x = conv_norm_relu(x, width, norm, f"{name}_e0b")
    skips = [x]
    for level in range(1, depth + 1):
        x = layers.MaxPooling2D(2, name=f"{name}_pool{level}")(x)
        f = width * 2 ** level
        x = conv_norm_relu(x, f, norm, f"{name}_e{level}a")
        x = conv_norm_relu(x, f, norm, f"{name}_e{level}b")
        skips.append(x)
    levels = {}
    for level in range(depth - 1, -1, -1):
        f = width * 2 ** level
        x = layers.UpSampling2D(2, name=f"{name}_up{level}")(x)
        x = layers.Concatenate(name=f"{name}_cat{level}")([x, skips[level]])
        x = conv_norm_relu(x, f, norm, f"{name}_d{level}a")
        x = conv_norm_relu(x, f, norm, f"{name}_d{level}b")
        if level:
            levels[f"s{2 ** level}"] = x
    return keras.Model(inp, {"g": x, **levels}, name=name)


def build_lite0_unet_body(image_shape, width: int, norm: str, pretrained: bool, load_weights: bool,
                          name: str = "lite0_unet"):
    """U-Net decoder on EfficientNet-Lite0 features (strides 32 -> 16 -> 8 -> 4 -> 2 -> 1): at each
    level nearest 2x upsampling, concatenation with the encoder's feature map of that stride (none at
    stride 1) and one 3x3 conv-norm-ReLU of width * min(2**level, 8) filters. [B, H, W, 1] ->
    {"g": G [B, H, W, width], "s<k>": the decoder's map at stride k = 2..16}. `pretrained`: ImageNet
    weights (loaded when `load_weights`), frozen BatchNorm."""
    encoder = build_efficientnet_lite0(image_shape, name=f"{name}_encoder", pretrained=pretrained,
                                       load_weights=load_weights)
    feats = encoder.output
    x = feats["s32"]
    levels = {}
    for level in (4, 3, 2, 1, 0):
        x = layers.UpSampling2D(2, name=f"{name}_up{level}")(x)
        if level:
            x = layers.Concatenate(name=f"{name}_cat{level}")([x, feats[f"s{2 ** level}"]])
        x = conv_norm_relu(x, width * min(2 ** level, 8), norm, f"{name}_d{level}")
        if level:
            levels[f"s{2 ** level}"] = x
    return keras.Model(encoder.input, {"g": x, **levels}, name=name)


@keras.saving.register_keras_serializable(package="seg4reg_tf")
class SegmentationNet(keras.layers.Layer):
    """Vertebra segmentation S: [B, H, W, 1] -> softmax [B, H, W, n_classes] (0 background, 1..17 T1..L5).

    With `gate=True`, `call(x, attention)` multiplies the last decoder feature map G by
    (1 + up(attention)) (see `RoiGate`) before the 1x1 classification head.

    Args:
        image_shape: (H, W, 1); H and W divisible by 2**depth.
        width, depth, norm: base filters, pooling levels, "batch" | "group".
        n_classes: output classes (18).
        gate, gate_stop_gradient: ROI gate switch and its stop-gradient.
        encoder: "unet" (the plain U-Net above) or "efficientnet_lite0" (`build_lite0_unet_body`;
            `depth` unused); any other encoder name means "unet".
        pretrained, load_weights: efficientnet_lite0 only (see `build_lite0_unet_body`).
    """

    def __init__(self, image_shape, width=16, depth=4, norm="batch", n_classes=N_CLASSES, gate=False,
                 gate_stop_gradient=True, encoder="unet", pretrained=False, load_weights=True, **kwargs):
        super().__init__(**kwargs)
        self.image_shape = tuple(int(s) for s in image_shape)
        self.width, self.depth, self.norm = int(width), int(depth), norm
        self.n_classes = int(n_classes)
        self.gate_enabled, self.gate_stop_gradient = bool(gate), bool(gate_stop_gradient)
        self.encoder_kind = "efficientnet_lite0" if encoder == "efficientnet_lite0" else "unet"
        self.pretrained = bool(pretrained)
        if self.encoder_kind == "efficientnet_lite0":
            self.body = build_lite0_unet_body(self.image_shape, self.width, norm, self.pretrained, load_weights,
                                              name=f"{self.name}_lite0_unet")
        else:
            self.body = build_unet_body(self.image_shape, self.width, self.depth, norm, name=f"{self.name}_unet")
        self.gate = RoiGate(stop_gradient=self.gate_stop_gradient, name="roi_gate") if self.gate_enabled else None
        self.head = layers.Conv2D(self.n_classes, 1, name="seg_logits")
        self.head.build((None, *self.image_shape[:2], self.width))
        self.built = True

    def call(self, x, attention=None, training=None, return_features=False):
        """Softmax [B, H, W, n_classes]; with `return_features` also the body's feature maps (a dict,
        "g" after the gate)."""
        if len(x.shape) != 4 or x.shape[-1] != 1:
            raise ValueError(f"SegmentationNet: expected input [B, H, W, 1], got shape {x.shape}")
        feats = dict(self.body(x, training=training))
        g = feats["g"]
        if self.gate is not None:
            if attention is None:
                raise ValueError("SegmentationNet: gate=True needs an attention map [B, h, w]")
            g = self.gate(g, attention)
        probs = ops.softmax(ops.cast(self.head(g), "float32"), axis=-1)  # float32 under mixed precision
        return (probs, {**feats, "g": g}) if return_features else probs

    def get_config(self):
        return {**super().get_config(), "image_shape": list(self.image_shape), "width": self.width,
                "depth": self.depth, "norm": self.norm, "n_classes": self.n_classes, "gate": self.gate_enabled,
                "gate_stop_gradient": self.gate_stop_gradient, "encoder": self.encoder_kind,
                "pretrained": self.pretrained}

    @classmethod
    def from_config(cls, config):
        return cls(**{**config, "load_weights": False})
