"""The official AASCE Cobb angles as batched `keras.ops` (in the model graph and the SavedModel).

Same semantics as `geometry.cobb` (the NumPy port of the organisers' `angleCal`): pairwise angles
between the 17 vertebra vectors, MATLAB's first-maximum tie breaking, the S test on the 34 endplate
midpoints and the branch choice on the bottom-edge midpoints against the image height. Computed in
float64 for the pairwise angles (the official rounding of the cosines to 8 decimals decides ties),
float32 elsewhere; it reproduces the float64 port's angles and end vertebrae. The rounding passes no
gradient: `selected_angles_ops` gives the same angles with one, for training on them.
"""
from __future__ import annotations

import math

from keras import ops

N_VERTEBRAE = 17


def _first_argmax(x, axis=-1):
    """Index of the first maximum along `axis` (MATLAB `max`: NaN ignored, the first index on ties, which
    TF's argmax does not promise; 0 when all are NaN)."""
    n = x.shape[axis]
    idx = ops.reshape(ops.arange(n, dtype="int32"), [n if i == (axis % len(x.shape)) else 1
                                                     for i in range(len(x.shape))])
    x = ops.where(ops.isnan(x), ops.full_like(x, -float("inf")), x)
    at_max = ops.equal(x, ops.max(x, axis=axis, keepdims=True))
    return ops.minimum(ops.min(ops.where(at_max, idx, n), axis=axis), n - 1)


def _take(x, index):
    """x [B, N] at int index [B] -> [B]."""
    return ops.take_along_axis(x, ops.expand_dims(index, -1), axis=1)[:, 0]


def _vertebra_vectors(landmarks, dtype):
    """landmarks [B, 68, 2] -> [B, 17, 2] `dtype`: each vertebra's left-to-right vector (the midpoint of its
    right corners minus that of its left corners), as the official code measures tilts."""
    p = ops.reshape(ops.cast(landmarks, dtype), (-1, N_VERTEBRAE, 4, 2))
    return (p[:, :, 1] + p[:, :, 3]) / 2.0 - (p[:, :, 0] + p[:, :, 2]) / 2.0


def pairwise_angles_ops(landmarks):
    """landmarks float [B, 68, 2] (x, y px; TL, TR, BL, BR per vertebra) -> float32 [B, 17, 17] degrees.

    As the official code: acos of the cosine rounded to 8 decimals (half away from zero), in float64,
    so near-equal angles tie exactly as they do there; made exactly symmetric (batched kernels may
    round A[i, j] and A[j, i] differently, which would move the first maximum)."""
    vec = _vertebra_vectors(landmarks, "float64")
    dot = ops.einsum("bik,bjk->bij", vec, vec)
    norm = ops.sqrt(ops.sum(vec * vec, axis=-1))
    cos = dot / (norm[:, :, None] * norm[:, None, :])
    cos = ops.sign(cos) * ops.floor(ops.abs(cos) * 1e8 + 0.5) / 1e8
    a = ops.arccos(ops.clip(cos, -1.0, 1.0)) * (180.0 / math.pi)
    a = (a + ops.transpose(a, (0, 2, 1))) / 2.0
    return ops.cast(a, "float32")


def cobb_angles_ops(landmarks, image_height):
    """Official Cobb angles of a batch of landmark sets.

    Args:
        landmarks: float [B, 68, 2] pixels (x, y), 4 corners per vertebra T1..L5 (TL, TR, BL, BR).
        image_height: the height H of the frame the landmarks live in (a number or float [B]).
    Returns:
        angles float32 [B, 3] degrees [PT, MT, TL]; end_vertebrae int32 [B, 3, 2] (upper, lower)
        0-based vertebra indices of the curves PT, MT, TL, as `CobbDetails.end_vertebrae`.
    """
    n = N_VERTEBRAE
    lm = ops.cast(landmarks, "float32")
    a = pairwise_angles_ops(lm)
    col_max = ops.max(a, axis=1)  # [B, 17]: MATLAB max(A), column-wise
    i = _first_argmax(col_max)  # first column holding the maximum
    a_i = ops.take_along_axis(a, ops.reshape(i, (-1, 1, 1)), axis=2)[:, :, 0]  # column i == row i
    j = _first_argmax(a_i)
    pt = _take(col_max, i)

    mid = (lm[:, 0::2] + lm[:, 1::2]) / 2.0  # [B, 34, 2] endplate midpoints
    mx, my = mid[..., 0], mid[..., 1]
    ll = ((my[:, :32] - my[:, 33:34]) / (my[:, :1] - my[:, 33:34])
          - (mx[:, :32] - mx[:, 33:34]) / (mx[:, :1] - mx[:, 33:34]))
    both_sides = ops.logical_and(ops.any(ll > 0, axis=1), ops.any(ll < 0, axis=1))
    is_s = ops.logical_or(both_sides, ops.logical_not(ops.all(ops.isfinite(ll), axis=1)))
    bottom_y = my[:, 1::2]  # [B, 17] bottom-edge midpoints
    height = ops.cast(image_height, "float32")
    upper = (_take(bottom_y, i) + _take(bottom_y, j)) < height

    idx = ops.arange(n, dtype="int32")[None, :]
    neg = ops.full_like(a_i, -1.0)
    # MT on both S branches: max(A[i, 0..i]) at its first argmax k
    row_mt = ops.where(idx <= i[:, None], a_i, neg)
    k = _first_argmax(row_mt)
    mt_s = ops.max(row_mt, axis=1)
    # S-upper: TL = max(A[j, j..16]); S-lower: TL = max(A[k, 0..k])
    a_j = ops.take_along_axis(a, ops.reshape(j, (-1, 1, 1)), axis=2)[:, :, 0]
    row_up = ops.where(idx >= j[:, None], a_j, neg)
    a_k = ops.take_along_axis(a, ops.reshape(k, (-1, 1, 1)), axis=2)[:, :, 0]
    row_low = ops.where(idx <= k[:, None], a_k, neg)
    k_up, k_low = _first_argmax(row_up), _first_argmax(row_low)
    tl_s = ops.where(upper, ops.max(row_up, axis=1), ops.max(row_low, axis=1))
    # C: MT = A[0, i], TL = A[16, j]
    mt_c, tl_c = a_i[:, 0], a_j[:, n - 1]

    mt = ops.where(is_s, mt_s, mt_c)
    tl = ops.where(is_s, tl_s, tl_c)
    zero, last = ops.zeros_like(i), ops.full_like(i, n - 1)
    mt_ends = ops.where(is_s[:, None], ops.stack([k, i], -1), ops.stack([zero, i], -1))
    tl_s_ends = ops.where(upper[:, None], ops.stack([j, k_up], -1), ops.stack([k_low, k], -1))
    tl_ends = ops.where(is_s[:, None], tl_s_ends, ops.stack([j, last], -1))
    ends = ops.stack([ops.stack([i, j], -1), mt_ends, tl_ends], axis=1)
    ends = ops.sort(ends, axis=-1)
    return ops.stack([pt, mt, tl], axis=-1), ops.cast(ends, "int32")


def selected_angles_ops(landmarks, end_vertebrae):
    """float32 [B, 3] degrees: the angle between the vertebra vectors of each curve's end vertebrae
    (int [B, 3, 2], as `cobb_angles_ops` returns them), differentiable in the landmarks.

    With `cobb_angles_ops`' own end vertebrae these are its angles (to float32 rounding): every official
    angle is the pairwise angle of its curve's two end vertebrae. The selection passes no gradient (it is
    piecewise constant); the angle at the selected pair does: atan2(|u x v|, u . v), which, unlike the
    acos of the rounded cosine, has a finite gradient everywhere but at a zero vector."""
    vec = _vertebra_vectors(landmarks, "float32")
    ends = ops.stop_gradient(ops.cast(end_vertebrae, "int32"))
    u = ops.take_along_axis(vec, ops.repeat(ops.expand_dims(ends[:, :, 0], -1), 2, axis=-1), axis=1)  # [B, 3, 2]
    v = ops.take_along_axis(vec, ops.repeat(ops.expand_dims(ends[:, :, 1], -1), 2, axis=-1), axis=1)
    cross = u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]
    dot = ops.sum(u * v, axis=-1)
    return ops.arctan2(ops.abs(cross), dot) * (180.0 / math.pi)
