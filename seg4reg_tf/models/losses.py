"""Loss terms of the joint model (pure keras.ops functions; scalars, mean reductions)."""
from __future__ import annotations

from keras import ops


def segmentation_cross_entropy(labels, probs, eps: float = 1e-7):
    """Mean pixel cross-entropy: `labels` int [B, H, W] in 0..K-1, `probs` softmax [B, H, W, K] (nats)."""
    k = probs.shape[-1]
    onehot = ops.one_hot(ops.cast(labels, "int32"), k, dtype=probs.dtype)
    return -ops.mean(ops.sum(onehot * ops.log(ops.clip(probs, eps, 1.0)), axis=-1))


def soft_dice_loss(labels, probs, include_background: bool = False, smooth: float = 1e-5):
    """1 - mean over classes of (2 sum(p g) + smooth) / (sum p + sum g + smooth), sums over the batch
    and pixels. Classes absent from both prediction and truth count as Dice 1. Foreground classes
    only unless `include_background`. Identical one-hot masks -> 0."""
    k = probs.shape[-1]
    g = ops.one_hot(ops.cast(labels, "int32"), k, dtype=probs.dtype)
    if not include_background:
        g, probs = g[..., 1:], probs[..., 1:]
    inter = ops.sum(g * probs, axis=(0, 1, 2))
    denom = ops.sum(g, axis=(0, 1, 2)) + ops.sum(probs, axis=(0, 1, 2))
    return 1.0 - ops.mean((2.0 * inter + smooth) / (denom + smooth))


def angle_l1_loss(true_deg, pred_deg, angle_scale: float):
    """Mean |pred - true| / angle_scale over [B, 3] angles in degrees (normalised L1)."""
    return ops.mean(ops.abs(ops.cast(pred_deg, "float32") - ops.cast(true_deg, "float32"))) / angle_scale


def attention_loss(attention_image, attention_mask):
    """L_att = mean |A(x) - stop_gradient(A(m))| over [B, h, w] maps."""
    return ops.mean(ops.abs(attention_image - ops.stop_gradient(attention_mask)))


def triangle_loss(angles_image, angles_seg, angle_scale: float):
    """L_tri = mean |R(x) - R(s_hat)| / angle_scale over [B, 3] degrees (gradient to both)."""
    return ops.mean(ops.abs(angles_image - angles_seg)) / angle_scale


__all__ = ["segmentation_cross_entropy", "soft_dice_loss", "angle_l1_loss", "attention_loss", "triangle_loss"]
