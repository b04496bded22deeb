"""Class activation maps of R (our reconstruction of the paper's CAM, and a Grad-CAM option).

For R = encoder -> F [B, h, w, C] -> GAP -> Dense(3) (kernel W [C, 3], bias b) the CAM of output k is
M_k = sum_c W[c, k] F[..., c], so that mean_hw(M_k) + b_k is exactly logit k (a "Grad-CAM" that needs
no second backward pass). The attention map is A = ReLU(sum_k M_k) divided per image by its max + eps,
so A lies in [0, 1] (all-zero when no location is positive).
"""
from __future__ import annotations

import keras
from keras import ops

EPS = 1e-6


def class_activation_maps(features, kernel):
    """Per-output CAMs: `features` [B, h, w, C], `kernel` [C, K] -> M [B, h, w, K] (logit units)."""
    if len(features.shape) != 4:
        raise ValueError(f"class_activation_maps: features must be [B, h, w, C], got shape {features.shape}")
    if kernel.shape[0] != features.shape[-1]:
        raise ValueError(
            f"class_activation_maps: kernel rows ({kernel.shape[0]}) must equal feature channels "
            f"({features.shape[-1]})")
    return ops.einsum("bhwc,ck->bhwk", features, ops.cast(kernel, features.dtype))


def normalize_attention(raw, eps: float = EPS):
    """ReLU then per-image division by (max + eps): `raw` [B, h, w] -> [B, h, w] in [0, 1]."""
    a = ops.relu(raw)
    peak = ops.max(a, axis=(1, 2), keepdims=True)
    return a / (peak + eps)


def summed_cam(features, kernel, centered: bool = False):
    """sum_k M_k [B, h, w] (logit units) from F [B, h, w, C] and the Dense kernel [C, K].

    Its spatial mean is sum_k (logit_k - b_k), so a loss on the map also pulls on the sum of the logits.
    `centered` subtracts that mean per image: the map then says only where, not how much."""
    m = ops.sum(class_activation_maps(ops.cast(features, "float32"), kernel), axis=-1)  # float32 under mixed precision
    return m - ops.mean(m, axis=(1, 2), keepdims=True) if centered else m


def cam_attention(features, kernel, eps: float = EPS):
    """Attention A(x) [B, h, w] in [0, 1] from F [B, h, w, C] and the Dense kernel [C, K] (pure keras.ops)."""
    return normalize_attention(summed_cam(features, kernel), eps)


def gradcam_attention(features, head_fn, eps: float = EPS):
    """Grad-CAM attention [B, h, w] in [0, 1] for any differentiable head `head_fn(F) -> logits [B, K]`.

    alpha_c = mean_hw d(sum_k logit_k)/dF_c; A = normalize(ReLU(sum_c alpha_c F_c)). keras.ops has no
    gradient op, so this path is TensorFlow-backend only (tf.GradientTape; nested tapes keep it
    differentiable for the attention loss). For GAP + linear heads it equals `cam_attention`.
    """
    if keras.backend.backend() != "tensorflow":
        raise NotImplementedError("model.cam='gradcam' needs the TensorFlow backend; use model.cam='cam'")
    import tensorflow as tf

    with tf.GradientTape() as tape:
        tape.watch(features)
        logits = head_fn(features)
        score = tf.reduce_sum(logits)
    grads = tape.gradient(score, features)
    alpha = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)  # [B, 1, 1, C]
    return normalize_attention(tf.reduce_sum(alpha * features, axis=-1), eps)
