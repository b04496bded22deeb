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


def attention_bce_loss(attention_logits, target):
    """Mean binary cross-entropy of sigmoid(`attention_logits`) [B, h, w] (the summed CAM, logit units)
    against `target` [B, h, w] in [0, 1] (no gradient into the target). Unlike an L1 on the ReLU'd,
    max-normalised A(x) it has no dead state: an all-negative CAM still gets a gradient."""
    t = ops.stop_gradient(ops.cast(target, "float32"))
    z = ops.cast(attention_logits, "float32")
    # log(1 + exp(z)) - t z, written stably
    return ops.mean(ops.relu(z) - z * t + ops.log1p(ops.exp(-ops.abs(z))))


def pooled_mask_attention(mask, grid, eps: float = 1e-6):
    """Attention target from a foreground mask [B, H, W, 1] in [0, 1]: the share of foreground in each
    cell of the attention `grid` (h, w) (H, W multiples of h, w), divided per image by its max + eps
    -> [B, h, w] in [0, 1]."""
    h, w = int(grid[0]), int(grid[1])
    fy, fx = mask.shape[1] // h, mask.shape[2] // w
    pooled = ops.average_pool(ops.cast(mask, "float32"), (fy, fx), strides=(fy, fx), padding="valid")[..., 0]
    return pooled / (ops.max(pooled, axis=(1, 2), keepdims=True) + eps)


def triangle_loss(angles_image, angles_seg, angle_scale: float):
    """L_tri = mean |R(x) - R(s_hat)| / angle_scale over [B, 3] degrees (gradient to both)."""
    return ops.mean(ops.abs(angles_image - angles_seg)) / angle_scale


__all__ = ["segmentation_cross_entropy", "soft_dice_loss", "angle_l1_loss", "attention_loss", "attention_bce_loss",
           "pooled_mask_attention", "triangle_loss"]
