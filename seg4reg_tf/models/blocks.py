"""Shared convolution blocks and encoders (functional Keras, keras.ops only)."""
from __future__ import annotations

import keras
from keras import layers


def norm_layer(kind: str, channels: int, name: str):
    """BatchNorm or GroupNorm (4 groups, or fewer when `channels` < 4)."""
    if kind == "batch":
        return layers.BatchNormalization(name=name)
    if kind == "group":
        groups = 4 if channels % 4 == 0 else 1
        return layers.GroupNormalization(groups=groups, name=name)
    raise ValueError(f"norm: expected 'batch' or 'group', got {kind!r}")


def conv_norm_relu(x, filters: int, norm: str, name: str, strides: int = 1):
    """3x3 conv (no bias) -> norm -> ReLU."""
    x = layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False,
                      kernel_initializer="he_normal", name=f"{name}_conv")(x)
    x = norm_layer(norm, filters, f"{name}_norm")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def build_light_encoder(image_shape, width: int, depth: int, norm: str, name: str = "light_encoder"):
    """A small strided CNN for CPUs: `depth` levels, each (3x3 stride-2 conv, 3x3 conv), filters
    width * 2**level. Input [B, H, W, 1] -> F [B, H / 2**depth, W / 2**depth, width * 2**(depth-1)]."""
    inp = keras.Input(shape=tuple(image_shape), name=f"{name}_input")
    x = inp
    for level in range(depth):
        f = width * 2 ** level
        x = conv_norm_relu(x, f, norm, f"{name}_l{level}a", strides=2)
        x = conv_norm_relu(x, f, norm, f"{name}_l{level}b")
    return keras.Model(inp, x, name=name)


def build_densenet_encoder(kind: str, image_shape, name: str):
    """DenseNet-121/169 feature extractor from keras.applications (weights=None, 1 input channel),
    output stride 32."""
    ctor = {"densenet121": keras.applications.DenseNet121, "densenet169": keras.applications.DenseNet169}[kind]
    base = ctor(include_top=False, weights=None, input_shape=tuple(image_shape))
    return keras.Model(base.input, base.output, name=name)


def freeze_batchnorm(model: keras.Model) -> None:
    """Freeze every BatchNormalization of `model`: Keras 3 then runs it in inference mode (moving
    statistics used and kept) and keeps its gamma/beta fixed."""
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, layers.BatchNormalization):
            layer.trainable = False


def encoder_stride(encoder: str, depth: int) -> int:
    """Output stride of an encoder (pixels of input per feature-map cell)."""
    return 2 ** depth if encoder == "light" else 32
